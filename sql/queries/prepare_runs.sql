-- Prepared shards by split and file: rows in, samples out, rejects, images written, throughput. Timings and
-- images written come from this home's runs (prepare_shard_runs): NULL for shards pulled from a version.
SELECT s.split, s.source_file, count(*) AS shards, sum(s.row_stop - s.row_start) AS rows_in,
       sum(s.samples_image + s.samples_text + s.samples_rl) AS samples, sum(s.rejects) AS rejects,
       sum(s.images_seen) AS images_seen, sum(r.images_written) AS images_written,
       round(sum(s.images_seen) / nullif(sum(r.seconds), 0), 1) AS images_per_cpu_second
FROM prepare_shards s LEFT JOIN prepare_shard_runs r USING (shard)
GROUP BY ALL
ORDER BY s.split, s.source_file;
