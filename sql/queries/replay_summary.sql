-- Share of samples whose code reproduces its recorded outputs (every block a match), by split.
WITH per_sample AS (
    SELECT split, sample_id, bool_and(status = 'match') AS reproduced, count(*) AS blocks
    FROM replays
    GROUP BY ALL
)
SELECT split, count(*) AS samples_with_code, count(*) FILTER (WHERE reproduced) AS reproduced,
       round(100.0 * count(*) FILTER (WHERE reproduced) / count(*), 2) AS reproduced_pct, sum(blocks) AS blocks
FROM per_sample
GROUP BY split
ORDER BY split;
