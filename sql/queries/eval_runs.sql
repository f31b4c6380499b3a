-- Every evaluation run: benchmark, samples, accuracy, and how trajectories ended.
SELECT run_id, benchmark, count(*) AS samples, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct,
       count(*) FILTER (WHERE stop_reason = 'answer') AS answered,
       count(*) FILTER (WHERE stop_reason <> 'answer') AS unanswered
FROM eval_results
GROUP BY ALL
ORDER BY run_id, benchmark;
