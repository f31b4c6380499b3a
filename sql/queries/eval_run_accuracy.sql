-- One evaluation run ($run_id): accuracy by benchmark and category, a per-benchmark '(all)' row first, with how
-- many samples gave no answer (the viewer's eval page).
SELECT benchmark, coalesce(category, '(all)') AS category, count(*) AS samples,
       count(*) FILTER (WHERE correct) AS correct, count(*) FILTER (WHERE prediction = '') AS no_answer,
       round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
FROM eval_results
WHERE run_id = $run_id
GROUP BY GROUPING SETS ((benchmark, category), (benchmark))
ORDER BY benchmark, category IS NOT NULL, category
