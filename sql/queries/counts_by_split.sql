-- Samples by split and kind (with / without image), with code-block totals.
SELECT split,
       count(*) FILTER (WHERE has_image) AS image_samples,
       count(*) FILTER (WHERE NOT has_image) AS text_samples,
       sum(n_code_blocks) AS code_blocks,
       sum(n_images) AS images
FROM sft_samples
GROUP BY split
ORDER BY split;
