-- One row per trajectory of every evaluation run: its response, code executions, successful ones and whether
-- its answer was right. eval/behaviour.py turns a run's rows into the learning bench's figures.
-- Executions are counted per trajectory first (only those of evaluation runs), then joined: grouping the joined
-- rows by the response text instead costs a string hash per execution row.
WITH ex AS (
    SELECT run_id, sample_id, count(*) AS executions, count(*) FILTER (WHERE status = 'ok') AS ok
    FROM executions
    WHERE run_id IN (SELECT DISTINCT run_id FROM eval_results)
    GROUP BY run_id, sample_id
)
SELECT t.run_id, t.sample_id, t.response, t.rounds, coalesce(ex.executions, 0) AS executions,
       coalesce(ex.ok, 0) AS ok, r.correct
FROM trajectories t
JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN ex ON ex.run_id = t.run_id AND ex.sample_id = t.sample_id
ORDER BY t.run_id, t.sample_id;
