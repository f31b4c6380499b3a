-- Every trajectory of one run ($run_id) with its images' stored paths (what an export of the run writes).
SELECT sample_id, image_paths
FROM trajectories
WHERE run_id = $run_id
ORDER BY sample_id
