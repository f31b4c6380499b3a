-- Groups whose present rewards are all equal (zero advantage: nothing to learn) per step, and groups with a
-- missing reward (dropped by the documented rule in rl/grpo.py).
WITH groups AS (
    SELECT run, step, "group", count(DISTINCT reward) AS distinct_rewards, count(*) - count(reward) AS missing
    FROM rl_rollouts
    GROUP BY run, step, "group"
)
SELECT run, step, count(*) AS groups, sum((distinct_rewards <= 1 AND missing = 0)::INT) AS zero_variance_groups,
       sum((missing > 0)::INT) AS groups_with_missing,
       round(avg((distinct_rewards <= 1 AND missing = 0)::INT), 4) AS zero_variance_share
FROM groups
GROUP BY run, step
ORDER BY run, step;
