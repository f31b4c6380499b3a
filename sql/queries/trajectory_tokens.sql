-- Images and tokens per trajectory, by run and stop reason.
SELECT run_id, stop_reason, count(*) AS trajectories, round(avg(rounds), 2) AS avg_rounds,
       round(avg(len(image_sha256)), 2) AS avg_images, round(avg(total_tokens), 1) AS avg_tokens,
       max(total_tokens) AS max_tokens, round(avg(generated_tokens), 1) AS avg_generated,
       round(avg(image_tokens), 1) AS avg_image_tokens
FROM trajectories
GROUP BY run_id, stop_reason
ORDER BY run_id, stop_reason;
