-- Accuracy by run, benchmark and category, with a per-benchmark '(all)' row.
SELECT run_id, benchmark, coalesce(category, '(all)') AS category, count(*) AS samples,
       count(*) FILTER (WHERE correct) AS correct, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
FROM eval_results
GROUP BY GROUPING SETS ((run_id, benchmark, category), (run_id, benchmark))
ORDER BY run_id, benchmark, category = '(all)' DESC, category
