-- Code blocks that did not reproduce, by split, status and reason, with an example.
SELECT split, status, reason, count(*) AS blocks, count(DISTINCT sample_id) AS samples, any_value(detail) AS example
FROM replays
WHERE status <> 'match'
GROUP BY ALL
ORDER BY split, blocks DESC;
