-- Why records were dropped, by split: one row per (split, reason), with an example.
SELECT split, reason, count(*) AS records, min(source_file || ':' || source_row) AS example, any_value(detail) AS example_detail
FROM rejects
GROUP BY split, reason
ORDER BY split, records DESC;
