-- Stored images by format and repair ('' = stored byte-for-byte), with sizes.
SELECT format, source_format, repair, count(*) AS images,
       round(sum(bytes) / 1e6, 2) AS mb, round(avg(width)) AS avg_width, round(avg(height)) AS avg_height
FROM images
GROUP BY ALL
ORDER BY images DESC;
