-- RL reward curve: mean / min / max reward, the means of its parts, and missing rewards per step of each run
-- (thyme train-rl).
SELECT run, step, count(*) AS rollouts, round(avg(reward), 4) AS reward_mean, min(reward) AS reward_min,
       max(reward) AS reward_max, round(avg(reward_format), 4) AS format_mean,
       round(avg(reward_accuracy), 4) AS accuracy_mean, round(avg(reward_consistency), 4) AS consistency_mean,
       count(*) - count(reward) AS reward_missing, sum(kept::INT) AS kept,
       sum(("limit" <> '')::INT) AS limited
FROM rl_rollouts
GROUP BY run, step
ORDER BY run, step;
