-- The sandbox statuses (in round order) and distinct error types of the given samples ($sample_ids) of a run.
SELECT sample_id, string_agg(status, ' ' ORDER BY round) AS statuses,
       coalesce(string_agg(DISTINCT nullif(error_type, ''), ' '), '') AS error_types
FROM executions
WHERE run_id = $run_id AND sample_id IN (SELECT unnest($sample_ids))
GROUP BY sample_id
