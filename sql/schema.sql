-- The catalog: DuckDB views over the Parquet parts under the data home.
-- Paths are relative to the home root (catalog.connect sets file_search_path to it). To open the file
-- from the duckdb CLI, run it from the home folder or `SET file_search_path = '/path/to/home'` first.
-- Each prepare shard publishes one folder shards/prepare/<key>/; shards/prepare/_schema/ holds empty,
-- typed parts so every view resolves before the first shard lands.
-- Columns are listed explicitly: they are the contract with thyme_core/catalog/schema.py (a test checks both).

CREATE OR REPLACE VIEW sft_samples_all AS
SELECT id, split, source_file, source_row, question, response, question_orig, response_orig,
       image_sha256, image_paths, has_image, n_images, n_code_blocks, path_map, shard
FROM read_parquet(['shards/prepare/*/image_samples.parquet', 'shards/prepare/*/text_samples.parquet']);

-- Deduplicated samples: the first occurrence (by source file and row) of each id.
CREATE OR REPLACE VIEW sft_samples AS
SELECT * FROM sft_samples_all
QUALIFY row_number() OVER (PARTITION BY id ORDER BY source_file, source_row, shard) = 1;

-- RL prompts (files in the released RL form); deduplicated by id like sft_samples.
CREATE OR REPLACE VIEW rl_samples_all AS
SELECT id, split, source_file, source_row, question, prompt, solution, image_sha256, image_paths, has_image, shard
FROM read_parquet('shards/prepare/*/rl_samples.parquet');

CREATE OR REPLACE VIEW rl_samples AS
SELECT * FROM rl_samples_all
QUALIFY row_number() OVER (PARTITION BY id ORDER BY source_file, source_row, shard) = 1;

CREATE OR REPLACE VIEW images AS
SELECT sha256, path, format, width, height, bytes, repair, source_format
FROM read_parquet('shards/prepare/*/images.parquet')
QUALIFY row_number() OVER (PARTITION BY sha256 ORDER BY path) = 1;

-- Every dropped record with its reason: rejects from the shards plus duplicates found across them.
CREATE OR REPLACE VIEW rejects AS
SELECT split, source_file, source_row, reason, detail, shard
FROM read_parquet('shards/prepare/*/rejects.parquet')
UNION ALL
SELECT split, source_file, source_row, 'duplicate_sample' AS reason,
       'same as ' || first_file || ' row ' || first_row AS detail, shard
FROM (
    SELECT *, first_value(source_file) OVER w AS first_file, first_value(source_row) OVER w AS first_row,
           row_number() OVER w AS occurrence
    FROM (SELECT 'sft' AS kind, * FROM sft_samples_all
          UNION ALL BY NAME SELECT 'rl' AS kind, * FROM rl_samples_all)
    WINDOW w AS (PARTITION BY kind, id ORDER BY source_file, source_row, shard)
)
WHERE occurrence > 1;

CREATE OR REPLACE VIEW prepare_shards AS
SELECT shard, split, source_file, row_start, row_stop, samples_image, samples_text, samples_rl, rejects,
       images_seen, images_repaired, code_version
FROM read_parquet('shards/prepare/*/summary.parquet');

-- How each shard was made in this home (time, host, images new to its store): local facts, never versioned,
-- so a pulled home has none for the shards it pulled.
CREATE OR REPLACE VIEW prepare_shard_runs AS
SELECT shard, images_written, seconds, host
FROM read_parquet('shards/prepare/*/summary.run.parquet');

-- Replay verification (thyme replay): one row per code block of a prepared sample. A sample prepared twice
-- (a duplicate) may be replayed twice: one row per (sample, block) is kept, a match first.
CREATE OR REPLACE VIEW replays AS
SELECT sample_id, split, block, status, similarity, reason, detail
FROM read_parquet('shards/replay/*/replays.parquet')
QUALIFY row_number() OVER (PARTITION BY sample_id, block ORDER BY status = 'match' DESC, reason) = 1;

-- How each replay shard was run in this home (wall time, samples at a time, host): local facts, never versioned.
CREATE OR REPLACE VIEW replay_shard_runs AS
SELECT shard, prepare_shard, samples, blocks, seconds, concurrency, host,
       seconds * concurrency / nullif(blocks, 0) AS seconds_per_block
FROM read_parquet('shards/replay/*/replays.run.parquet');

-- Agent trajectories (thyme infer, thyme eval, RL rollouts): each finished shard publishes one folder
-- shards/agent/<key>/ with trajectories/turns/executions parts (and eval_results for evaluation shards);
-- each RL step publishes one such folder, shards/agent/rl-<run key>-step-<N>/, and its rl_rollouts part
-- under shards/rl/<run key>/step-<N>/.
-- A trajectory published in two folders (an evaluation re-planned with other shard sizes) is kept from the first
-- folder by name, and its turns, executions and eval row from that folder: agent_shadowed lists the copies left
-- out (a window over the trajectories' keys only, not over every turn and execution row: that cost seconds at
-- millions of rows). agent_part(clean, dirty, by_name, listed) reads the parts `clean` without per-row work,
-- only dropping whole folders that hold a shadowed copy (none when `listed`: the caller listed only folders that
-- hold none), and checks row by row the parts `dirty` of the folders that do. Here both are every folder; Python
-- readers (catalog/views.py) pass these same views explicit lists (each with its typed empty part) and keep
-- agent_shadowed as a table, computed once per shard layout.
-- A part's folder is the one its path names; agent_files (empty here) names it for files read by another name (a
-- version queried in place reads objects by URL: versions/query.py fills it).
CREATE OR REPLACE VIEW agent_files AS
SELECT ''::VARCHAR AS file, ''::VARCHAR AS folder WHERE false;

CREATE OR REPLACE VIEW agent_shadowed AS
SELECT run_id, sample_id, folder
FROM (SELECT t.run_id, t.sample_id, coalesce(f.folder, split_part(t.filename, '/', -2)) AS folder
      FROM read_parquet('shards/agent/*/trajectories.parquet', filename = true) t
      LEFT JOIN agent_files f ON f.file = t.filename)
QUALIFY row_number() OVER (PARTITION BY run_id, sample_id ORDER BY folder) > 1;

-- by_name: read columns by name (union_by_name), for parts that gained columns: older parts read them as NULL.
CREATE OR REPLACE MACRO agent_part(clean, dirty, by_name, listed) AS TABLE
SELECT * EXCLUDE (filename)
FROM read_parquet(clean, filename = true, union_by_name = by_name) p
WHERE listed OR split_part(p.filename, '/', -2) NOT IN (SELECT folder FROM agent_shadowed)
UNION ALL
SELECT p.* EXCLUDE (filename)
FROM read_parquet(dirty, filename = true, union_by_name = by_name) p
LEFT JOIN agent_files f ON f.file = p.filename
WHERE coalesce(f.folder, split_part(p.filename, '/', -2)) IN (SELECT folder FROM agent_shadowed)
  AND NOT EXISTS (SELECT 1 FROM agent_shadowed s WHERE s.run_id = p.run_id AND s.sample_id = p.sample_id
                  AND s.folder = coalesce(f.folder, split_part(p.filename, '/', -2)));

CREATE OR REPLACE VIEW trajectories AS
SELECT run_id, sample_id, benchmark, question, image_sha256, image_paths, response, answer, correct, stop_reason,
       rounds, prompt_tokens, generated_tokens, sandbox_tokens, image_tokens, total_tokens, token_ids, token_mask,
       image_offsets, image_grid_thw, generate_s, sandbox_s, total_s, backend, model, config
FROM agent_part(['shards/agent/*/trajectories.parquet'], ['shards/agent/*/trajectories.parquet'], false, false);

CREATE OR REPLACE VIEW turns AS
SELECT run_id, sample_id, round, text, code, generated_tokens, finish
FROM agent_part(['shards/agent/*/turns.parquet'], ['shards/agent/*/turns.parquet'], false, false);

CREATE OR REPLACE VIEW executions AS
SELECT run_id, sample_id, round, status, error_type, error, stdout, duration_s, output_image_sha256, fed_back,
       feedback_tokens
FROM agent_part(['shards/agent/*/executions.parquet'], ['shards/agent/*/executions.parquet'], false, false);

CREATE OR REPLACE VIEW eval_results AS
SELECT run_id, benchmark, "index", category, sample_id, prediction, choice, answer, correct, stop_reason,
       cycle_category, l2_category, protocol, matched_by, attempts
FROM agent_part(['shards/agent/*/eval_results.parquet'], ['shards/agent/*/eval_results.parquet'], true, false);

-- The headline rows papers publish, by run and benchmark, computed as VLMEvalKit computes them:
-- - HRBench (rows with a cycle_category): per cycle, the accuracy of 'all', 'single' and 'cross' (the
--   category); then their average over the cycles: rows 'cycle average: all|single|cross';
-- - MME-RealWorld (categories 'Perception/...' and 'Reasoning/...'): the task's questions pooled (not an
--   average of its subtasks): rows 'Perception (pooled)', 'Reasoning (pooled)'.
CREATE OR REPLACE VIEW eval_headline AS
WITH per_cycle AS (
    SELECT run_id, benchmark, cycle_category, coalesce(category, 'all') AS kind, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, avg(correct::INTEGER) AS accuracy
    FROM eval_results
    WHERE coalesce(cycle_category, '') <> ''
    GROUP BY GROUPING SETS ((run_id, benchmark, cycle_category, category), (run_id, benchmark, cycle_category))
),
cycles AS (
    SELECT run_id, benchmark, 'cycle average: ' || kind AS category, sum(samples) AS samples,
           sum(correct) AS correct, round(100.0 * avg(accuracy), 2) AS accuracy_pct
    FROM per_cycle
    GROUP BY ALL
),
pooled AS (
    SELECT run_id, benchmark, split_part(category, '/', 1) || ' (pooled)' AS category, count(*) AS samples,
           count(*) FILTER (WHERE correct) AS correct, round(100.0 * avg(correct::INTEGER), 2) AS accuracy_pct
    FROM eval_results
    WHERE category LIKE '%/%'
    GROUP BY ALL
)
SELECT * FROM cycles
UNION ALL
SELECT * FROM pooled;

-- RL rollouts (thyme train-rl): one row per rollout of a step; join trajectories / turns / executions on
-- (run_id, sample_id) = (run, sample_id). A step folder is published once (fsio.atomic_dir) and its sample ids
-- carry the step, so its rows are read as they are.
-- reward_format / reward_accuracy / reward_consistency: the reward's components, NULL where not computed (and in
-- steps published before they were stored: union_by_name).
CREATE OR REPLACE VIEW rl_rollouts AS
SELECT run, step, "group", member, prompt_id, sample_id, reward, reward_reason, reward_format, reward_accuracy,
       reward_consistency, advantage, kept, "limit"
FROM read_parquet(['shards/rl/**/rl_rollouts.parquet'], union_by_name = true);
