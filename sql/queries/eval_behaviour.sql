-- One row per trajectory of an evaluation run (bound: run_id): its response, code executions, successful
-- ones and whether its answer was right. eval/behaviour.py turns these into the learning bench's figures.
SELECT t.sample_id, t.response, t.rounds, count(e.round) AS executions,
       count(e.round) FILTER (WHERE e.status = 'ok') AS ok, coalesce(r.correct, false) AS correct
FROM trajectories t
LEFT JOIN executions e ON e.run_id = t.run_id AND e.sample_id = t.sample_id
LEFT JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
WHERE t.run_id = ?
GROUP BY t.sample_id, t.response, t.rounds, r.correct
ORDER BY t.sample_id;
