"""Shard work of prepare, replay and evaluation on a Ray cluster, with the version store as the only shared state.

Split like datatrove's executors: what a step does is apart from where it runs.
- `engine.py`: the executor. Connects to a Ray cluster (`ray://HOST:PORT`, `--cluster` or THYME_RAY_ADDRESS),
  runs one function per shard as a Ray task with declared resources (CPUs for prepare and replay, a GPU for an
  evaluation shard) and `max_retries` for a worker that dies; a shard's own error (ThymeError) is not retried.
- `stored.py`: what a step does on a worker. It runs the stage's own shard function (prepare_shard,
  replay_shard, eval_shard: the code a local run uses) in a scratch home, puts the shard's Parquet parts and
  images straight into the content-addressed store, writes the shard's completion marker
  (`parts/<table>/<key>.json`) last, and returns only its manifest entries and counts.
- `shipped.py`: files only the driver has (an evaluation's benchmark TSV, response file and model: a model
  version, or a driver folder stored as one), put into the store by content and downloaded once per node.
- `publish.py`: the driver's one step at the end: the version's manifest (the ref's current files, the typed
  empty schema parts, every shard's entries), published like `thyme data push` (objects, manifest, ref by
  compare-and-swap), then the driver's home pulls it when that is safe.

Why Ray tasks called from thin Prefect tasks, not prefect-ray's RayTaskRunner: thyme_core never imports
prefect, and the step must be the same plain function the local warm pool runs; with RayTaskRunner every Ray
worker runs Prefect's task engine and must reach the Prefect API (workers on a private cluster often cannot),
and a Prefect 3 report (PrefectHQ/prefect#15539) shows its result retrieval failing on multi-node clusters.
Here the driver's Prefect tasks own the UI (one task run per shard, progress, artifacts) and Ray owns
placement and retries; a Ray task returns plain data (manifest entries and counts), never Prefect state.
"""
