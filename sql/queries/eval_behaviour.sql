-- One row per trajectory of every evaluation run: its response, code executions, successful ones and whether
-- its answer was right. eval/behaviour.py turns a run's rows into the learning bench's figures.
SELECT t.run_id, t.sample_id, t.response, t.rounds, count(e.round) AS executions,
       count(e.round) FILTER (WHERE e.status = 'ok') AS ok, r.correct
FROM trajectories t
JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN executions e ON e.run_id = t.run_id AND e.sample_id = t.sample_id
GROUP BY t.run_id, t.sample_id, t.response, t.rounds, r.correct
ORDER BY t.run_id, t.sample_id;
