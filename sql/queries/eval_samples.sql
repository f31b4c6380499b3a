-- The samples of one evaluation run ($run_id), of a benchmark and category ('' = all), filtered by outcome
-- ('' / correct / wrong / no_answer), stop reason, error type of any execution ('' = any) and a case-insensitive
-- search of the question text; one page ($limit rows from $offset) with each sample's sandbox statuses and error types.
WITH picked AS (
    SELECT r.benchmark, r."index", r.category, r.sample_id, r.prediction, r.choice, r.answer, r.correct,
           r.stop_reason, t.question, t.rounds, t.total_tokens, TRY_CAST(r."index" AS BIGINT) AS index_number
    FROM eval_results r
    JOIN trajectories t ON t.run_id = r.run_id AND t.sample_id = r.sample_id
    WHERE r.run_id = $run_id
      AND ($benchmark = '' OR r.benchmark = $benchmark)
      AND ($category = '' OR r.category = $category)
      AND ($outcome = '' OR ($outcome = 'correct' AND r.correct) OR ($outcome = 'wrong' AND NOT r.correct AND r.prediction <> '')
           OR ($outcome = 'no_answer' AND r.prediction = ''))
      AND ($stop_reason = '' OR r.stop_reason = $stop_reason)
      AND ($search = '' OR t.question ILIKE '%' || $search || '%')
      AND ($error_type = '' OR r.sample_id IN (SELECT sample_id FROM executions
                                               WHERE run_id = $run_id AND error_type = $error_type))
    ORDER BY r.benchmark, index_number, r."index"
    LIMIT $limit OFFSET $offset
)
SELECT p.*, coalesce(string_agg(e.status, ' ' ORDER BY e.round), '') AS statuses,
       coalesce(string_agg(DISTINCT nullif(e.error_type, ''), ' '), '') AS error_types
FROM picked p
LEFT JOIN executions e ON e.run_id = $run_id AND e.sample_id = p.sample_id
GROUP BY ALL
ORDER BY p.benchmark, p.index_number, p."index"
