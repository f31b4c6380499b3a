-- The samples of one evaluation run ($run_id), of a benchmark and category ('' = all), filtered by outcome
-- ('' / correct / wrong / no_answer), stop reason ('' = any), a case-insensitive search of the question text and
-- an error type of one of its executions ('' = any); one page: $limit rows from $offset.
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
  -- the guard inside the subquery lets DuckDB skip its scan when no error type is asked for (the OR does not)
  AND ($error_type = '' OR r.sample_id IN (SELECT sample_id FROM executions
                                           WHERE $error_type <> '' AND run_id = $run_id AND error_type = $error_type))
ORDER BY r.benchmark, TRY_CAST(r."index" AS BIGINT), r."index"
LIMIT $limit OFFSET $offset
