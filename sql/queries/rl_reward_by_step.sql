-- RL reward curve: mean / min / max reward and missing rewards per step of each run (thyme train-rl).
SELECT run, step, count(*) AS rollouts, round(avg(reward), 4) AS reward_mean, min(reward) AS reward_min,
       max(reward) AS reward_max, count(*) - count(reward) AS reward_missing, sum(kept::INT) AS kept,
       sum(("limit" <> '')::INT) AS limited
FROM rl_rollouts
GROUP BY run, step
ORDER BY run, step;
