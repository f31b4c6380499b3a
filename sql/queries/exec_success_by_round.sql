-- Code success rate by round (0 = the first code block of a trajectory), over all agent runs.
SELECT round, count(*) AS executions, count(*) FILTER (WHERE status = 'ok') AS ok,
       round(100.0 * count(*) FILTER (WHERE status = 'ok') / count(*), 2) AS ok_pct,
       count(*) FILTER (WHERE fed_back = 'image') AS fed_images
FROM executions
GROUP BY round
ORDER BY round;
