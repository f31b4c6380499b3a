-- Accuracy by run, benchmark and category, with a per-benchmark '(all)' row, plus the headline rows papers
-- publish (the view eval_headline: HRBench's cycle averages, MME-RealWorld's pooled tasks).
WITH plain AS (
    SELECT run_id, benchmark, coalesce(category, '(all)') AS category, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
    FROM eval_results
    GROUP BY GROUPING SETS ((run_id, benchmark, category), (run_id, benchmark))
)
SELECT * FROM (SELECT * FROM plain UNION ALL SELECT * FROM eval_headline)
ORDER BY run_id, benchmark, category = '(all)' DESC, category
