-- The tool-use-collapse signal: per step, the share of rollouts that ran code at all (code_rate), the share
-- of executions that succeeded (code_success_rate), and executions per rollout.
WITH per_rollout AS (
    SELECT r.run, r.step, r.sample_id, count(e.round) AS executions, count(e.round) FILTER (e.status = 'ok') AS ok
    FROM rl_rollouts r
    LEFT JOIN executions e ON e.run_id = r.run AND e.sample_id = r.sample_id
    GROUP BY r.run, r.step, r.sample_id
)
SELECT run, step, count(*) AS rollouts, round(avg((executions > 0)::INT), 4) AS code_rate,
       round(sum(ok) / nullif(sum(executions), 0), 4) AS code_success_rate,
       round(avg(executions), 3) AS executions_per_rollout
FROM per_rollout
GROUP BY run, step
ORDER BY run, step;
