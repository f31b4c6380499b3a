-- RL prompts by split: how many, how many with an image, images in all, distinct solutions.
SELECT split, count(*) AS rl_samples,
       count(*) FILTER (WHERE has_image) AS with_image,
       sum(len(image_sha256)) AS images,
       count(DISTINCT solution) AS distinct_solutions
FROM rl_samples
GROUP BY split
ORDER BY split;
