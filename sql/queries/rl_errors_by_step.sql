-- Error taxonomy of RL rollouts' code executions by step: sandbox status and exception type.
SELECT r.run, r.step, e.status, e.error_type, count(*) AS executions
FROM rl_rollouts r
JOIN executions e ON e.run_id = r.run AND e.sample_id = r.sample_id
WHERE e.status <> 'ok'
GROUP BY r.run, r.step, e.status, e.error_type
ORDER BY r.run, r.step, executions DESC, e.status, e.error_type;
