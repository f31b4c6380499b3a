-- The samples of one evaluation run ($run_id), of a benchmark and category ('' = all), filtered by outcome
-- ('' / correct / wrong / no_answer), stop reason ('' = any), a case-insensitive search of the question text and,
-- when $only_samples is a list (not NULL), to those sample ids (eval_error_samples gives the ones with an error
-- type); one page: $limit rows from $offset.
SELECT r.benchmark, r."index", r.category, r.sample_id, r.prediction, r.choice, r.answer, r.correct, r.stop_reason,
       t.question, t.rounds, t.total_tokens
FROM eval_results r
JOIN trajectories t ON t.run_id = r.run_id AND t.sample_id = r.sample_id
WHERE r.run_id = $run_id
  AND ($benchmark = '' OR r.benchmark = $benchmark)
  AND ($category = '' OR r.category = $category)
  AND ($outcome = '' OR ($outcome = 'correct' AND r.correct) OR ($outcome = 'wrong' AND NOT r.correct AND r.prediction <> '')
       OR ($outcome = 'no_answer' AND r.prediction = ''))
  AND ($stop_reason = '' OR r.stop_reason = $stop_reason)
  AND ($search = '' OR t.question ILIKE '%' || $search || '%')
  AND ($only_samples IS NULL OR r.sample_id IN (SELECT unnest($only_samples)))
ORDER BY r.benchmark, TRY_CAST(r."index" AS BIGINT), r."index"
LIMIT $limit OFFSET $offset
