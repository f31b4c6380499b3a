-- Every agent run in the catalog (evaluation, RL rollouts, inference): trajectories, benchmarks, model, backend,
-- agent config fingerprint, accuracy where scored, and how trajectories ended.
SELECT run_id, CASE WHEN starts_with(run_id, 'rl-') THEN 'rl' WHEN starts_with(run_id, 'eval-') THEN 'eval'
                    ELSE 'agent' END AS kind,
       count(*) AS trajectories, string_agg(DISTINCT benchmark, ', ') FILTER (WHERE benchmark <> '') AS benchmarks,
       any_value(model) AS model, any_value(backend) AS backend, any_value(config) AS config,
       round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct,
       count(*) FILTER (WHERE stop_reason = 'answer') AS answered
FROM trajectories
GROUP BY run_id
ORDER BY kind, run_id
