-- The store's versions with their lineage (thyme_core/versions/lineage.py registers `version_rows`, one row per
-- entry of every ref's history). Used by `thyme data lineage`.
CREATE OR REPLACE VIEW versions AS
SELECT name, tag, manifest, kind, pushed_at, publisher, current,
       stage, stage_key, inputs, config, code, run, flow_run
FROM version_rows;
