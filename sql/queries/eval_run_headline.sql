-- One evaluation run's ($run_id) headline rows, as papers publish them (the view eval_headline): the viewer's
-- eval page shows them beside the rows by benchmark and category.
SELECT benchmark, category, samples, correct, accuracy_pct
FROM eval_headline
WHERE run_id = $run_id
ORDER BY benchmark, category
