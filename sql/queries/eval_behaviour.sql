-- One row per trajectory of the evaluation run $run_id: its response, code executions, successful ones and
-- whether its answer was right. eval/behaviour.py turns these rows into the learning bench's figures.
-- A trajectory's `rounds` is its number of execution rows (agent/records.py writes one per execution), so only
-- the executions that did not succeed are grouped: grouping every execution row by trajectory was most of this
-- query's time. Every filter is on run_id, so other runs' parts are skipped by their statistics.
WITH failed AS (
    SELECT sample_id, count(*) AS failed
    FROM executions
    WHERE run_id = $run_id AND status <> 'ok'
    GROUP BY sample_id
)
SELECT t.run_id, t.sample_id, t.response, t.rounds, t.rounds AS executions,
       t.rounds - coalesce(f.failed, 0) AS ok, r.correct
FROM trajectories t
JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN failed f ON f.sample_id = t.sample_id
WHERE t.run_id = $run_id AND r.run_id = $run_id
ORDER BY t.sample_id;
