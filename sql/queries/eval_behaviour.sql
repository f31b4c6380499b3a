-- One row per trajectory of every evaluation run: its response, code executions, successful ones and whether
-- its answer was right. eval/behaviour.py turns a run's rows into the learning bench's figures.
-- A trajectory's `rounds` is its number of execution rows (agent/records.py writes one per execution), so only
-- the executions that did not succeed are grouped (by trajectory, only evaluation runs'): grouping every
-- execution row by its two string keys was most of this query's time.
WITH failed AS (
    SELECT run_id, sample_id, count(*) AS failed
    FROM executions
    WHERE status <> 'ok' AND run_id IN (SELECT DISTINCT run_id FROM eval_results)
    GROUP BY run_id, sample_id
)
SELECT t.run_id, t.sample_id, t.response, t.rounds, t.rounds AS executions,
       t.rounds - coalesce(f.failed, 0) AS ok, r.correct
FROM trajectories t
JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN failed f ON f.run_id = t.run_id AND f.sample_id = t.sample_id
ORDER BY t.run_id, t.sample_id;
