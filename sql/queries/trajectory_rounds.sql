-- The rounds of one trajectory ($run_id, $sample_id): the model's text and code, and what its execution gave.
SELECT u.round, u.text, u.code, u.generated_tokens, u.finish, e.status, e.error_type, e.error, e.stdout,
       e.duration_s, e.output_image_sha256, e.fed_back, e.feedback_tokens
FROM turns u
LEFT JOIN executions e ON e.run_id = u.run_id AND e.sample_id = u.sample_id AND e.round = u.round
WHERE u.run_id = $run_id AND u.sample_id = $sample_id
ORDER BY u.round
