-- Prepared shards by split and file: rows in, samples out, rejects, images.
-- (Wall time and images new to a home are run facts, not catalog content: see the prepare report.)
SELECT split, source_file, count(*) AS shards, sum(row_stop - row_start) AS rows_in,
       sum(samples_image + samples_text + samples_rl) AS samples, sum(rejects) AS rejects,
       sum(images_seen) AS images_seen, sum(images_repaired) AS images_repaired
FROM prepare_shards
GROUP BY ALL
ORDER BY split, source_file;
