-- Curves of one RL run ($run) over its steps, from the catalog: reward mean and spread, the means of its parts
-- (format, accuracy, and consistency over the rollouts it was asked for), code use and code success (the
-- tool-use-collapse signal), zero-variance groups, kept and limited rollouts.
WITH ex AS (
    SELECT sample_id, count(*) AS executions, count(*) FILTER (WHERE status = 'ok') AS ok
    FROM executions WHERE run_id = $run GROUP BY sample_id
), per_rollout AS (
    SELECT r.step, r."group", r.reward, r.reward_format, r.reward_accuracy, r.reward_consistency, r.kept, r."limit",
           coalesce(ex.executions, 0) AS executions, coalesce(ex.ok, 0) AS ok
    FROM rl_rollouts r LEFT JOIN ex ON ex.sample_id = r.sample_id
    WHERE r.run = $run
), groups AS (
    SELECT step, "group", count(DISTINCT reward) <= 1 AND count(*) = count(reward) AS zero_variance
    FROM per_rollout GROUP BY step, "group"
)
SELECT p.step, count(*) AS rollouts, round(avg(reward), 4) AS reward_mean, round(stddev_pop(reward), 4) AS reward_std,
       min(reward) AS reward_min, max(reward) AS reward_max, round(avg(reward_format), 4) AS format_mean,
       round(avg(reward_accuracy), 4) AS accuracy_mean, round(avg(reward_consistency), 4) AS consistency_mean,
       round(avg((executions > 0)::INT), 4) AS code_rate,
       round(sum(ok) / nullif(sum(executions), 0), 4) AS code_success_rate, sum(kept::INT) AS kept,
       sum(("limit" <> '')::INT) AS limited,
       (SELECT count(*) FILTER (WHERE zero_variance) FROM groups g WHERE g.step = p.step) AS zero_variance_groups
FROM per_rollout p
GROUP BY p.step
ORDER BY p.step
