-- One RL step ($run, $step): every rollout by group and member, with reward and its parts (format, accuracy,
-- consistency; NULL where not computed), advantage, kept or dropped and why,
-- how its trajectory ended and its code executions.
WITH r AS (
    SELECT *, count(DISTINCT reward) OVER g AS distinct_rewards, count(*) OVER g - count(reward) OVER g AS missing
    FROM rl_rollouts
    WHERE run = $run AND step = $step
    WINDOW g AS (PARTITION BY "group")
), ex AS (
    SELECT sample_id, count(*) AS executions, count(*) FILTER (WHERE status = 'ok') AS ok,
           string_agg(status, ' ' ORDER BY round) AS statuses
    FROM executions
    WHERE run_id = $run AND starts_with(sample_id, printf('s%05d/', $step))
    GROUP BY sample_id
)
SELECT r."group", r.member, r.prompt_id, r.sample_id, r.reward, r.reward_reason, r.reward_format,
       r.reward_accuracy, r.reward_consistency, r.advantage, r.kept, r."limit",
       CASE WHEN r.kept THEN ''
            WHEN r."limit" <> '' THEN 'hit ' || r."limit"
            WHEN r.missing > 0 THEN 'group has a missing reward'
            WHEN r.distinct_rewards <= 1 THEN 'zero-variance group'
            ELSE 'no loss tokens' END AS why_dropped,
       t.question, t.answer, t.stop_reason, t.total_tokens, t.generated_tokens,
       coalesce(ex.executions, 0) AS executions, coalesce(ex.ok, 0) AS ok, coalesce(ex.statuses, '') AS statuses
FROM r
LEFT JOIN trajectories t ON t.run_id = r.run AND t.sample_id = r.sample_id
LEFT JOIN ex ON ex.sample_id = r.sample_id
ORDER BY r."group", r.member
