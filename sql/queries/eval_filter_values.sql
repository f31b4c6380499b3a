-- The values the eval samples filter offers for one run ($run_id): stop reasons and execution error types,
-- each with its count.
SELECT 'stop_reason' AS kind, stop_reason AS value, count(*) AS n
FROM eval_results WHERE run_id = $run_id GROUP BY stop_reason
UNION ALL
SELECT 'error_type', error_type, count(*)
FROM executions WHERE run_id = $run_id AND error_type <> '' GROUP BY error_type
ORDER BY kind, n DESC, value
