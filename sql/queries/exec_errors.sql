-- The error taxonomy: failed executions by status and exception type, with one example message each.
SELECT status, error_type, count(*) AS executions, any_value(error) AS example
FROM executions
WHERE status <> 'ok'
GROUP BY status, error_type
ORDER BY executions DESC, status, error_type;
