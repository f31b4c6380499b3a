-- How many code rounds the samples have, by split.
SELECT split, n_code_blocks, count(*) AS samples
FROM sft_samples
GROUP BY ALL
ORDER BY split, n_code_blocks;
