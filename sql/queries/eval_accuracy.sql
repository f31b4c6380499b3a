-- Accuracy by run, benchmark and category, with a per-benchmark '(all)' row, plus the headline rows papers
-- publish, computed as VLMEvalKit computes them:
-- - HRBench (rows with a cycle_category): per cycle, the accuracy of 'all', 'single' and 'cross' (the
--   category); then their average over the cycles: rows 'cycle average: all|single|cross';
-- - MME-RealWorld (categories 'Perception/...' and 'Reasoning/...'): the task's questions pooled (not an
--   average of its subtasks): rows 'Perception (pooled)', 'Reasoning (pooled)'.
WITH plain AS (
    SELECT run_id, benchmark, coalesce(category, '(all)') AS category, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
    FROM eval_results
    GROUP BY GROUPING SETS ((run_id, benchmark, category), (run_id, benchmark))
),
per_cycle AS (
    SELECT run_id, benchmark, cycle_category, coalesce(category, 'all') AS kind, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, avg(correct::INTEGER) AS accuracy
    FROM eval_results
    WHERE coalesce(cycle_category, '') <> ''
    GROUP BY GROUPING SETS ((run_id, benchmark, cycle_category, category), (run_id, benchmark, cycle_category))
),
cycles AS (
    SELECT run_id, benchmark, 'cycle average: ' || kind AS category, sum(samples) AS samples,
           sum(correct) AS correct, round(100.0 * avg(accuracy), 2) AS accuracy_pct
    FROM per_cycle
    GROUP BY ALL
),
pooled AS (
    SELECT run_id, benchmark, split_part(category, '/', 1) || ' (pooled)' AS category, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
    FROM eval_results
    WHERE category LIKE '%/%'
    GROUP BY ALL
)
SELECT * FROM (SELECT * FROM plain UNION ALL SELECT * FROM cycles UNION ALL SELECT * FROM pooled)
ORDER BY run_id, benchmark, category = '(all)' DESC, category
