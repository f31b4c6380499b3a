-- Prepared shards by split and file: rows in, samples out, rejects, images written, throughput.
SELECT split, source_file, count(*) AS shards, sum(row_stop - row_start) AS rows_in,
       sum(samples_image + samples_text + samples_rl) AS samples, sum(rejects) AS rejects,
       sum(images_seen) AS images_seen, sum(images_written) AS images_written,
       round(sum(images_seen) / nullif(sum(seconds), 0), 1) AS images_per_cpu_second
FROM prepare_shards
GROUP BY ALL
ORDER BY split, source_file;
