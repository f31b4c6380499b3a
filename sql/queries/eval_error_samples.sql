-- The samples of one run ($run_id) with at least one execution of error type $error_type (the eval filter).
SELECT DISTINCT sample_id
FROM executions
WHERE run_id = $run_id AND error_type = $error_type
