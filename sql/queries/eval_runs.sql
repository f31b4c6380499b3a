-- Every evaluation run: benchmark, scoring protocol, samples, accuracy, how trajectories ended, and how many
-- rows needed retries (VLMEvalKit's retry of trajectories that end without an answer) or the judge.
SELECT run_id, benchmark, coalesce(protocol, 'thyme') AS protocol, count(*) AS samples,
       round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct,
       count(*) FILTER (WHERE stop_reason = 'answer') AS answered,
       count(*) FILTER (WHERE stop_reason <> 'answer') AS unanswered,
       count(*) FILTER (WHERE coalesce(attempts, 1) > 1) AS retried,
       count(*) FILTER (WHERE matched_by IN ('judge', 'judge_failed')) AS judged
FROM eval_results
GROUP BY ALL
ORDER BY run_id, benchmark;
