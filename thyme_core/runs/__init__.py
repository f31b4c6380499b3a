"""One run framework for SFT and RL: what a training run is, wherever it runs.

    config.py      the shared config behaviour (replace, JSON, config hash without where/how-often fields),
                   DeepSpeed configs by name
    folder.py      run identity and keys (inputs + config hash + code version), write-once run folders,
                   DONE markers, LATEST pointers
    launch.py      torchrun launching (one node or several, static rendezvous at node 0), the METRICS line protocol
    checkpoint.py  step checkpoints with COMPLETE markers, DeepSpeed save/resume, final HF weights
    engine.py      pieces both trainers build their engine from (DeepSpeed config filling, ViT freezing)
    metrics.py     metrics.jsonl: one record per step, the last written
    plans.py       prepare, replay and evaluation runs' records (plan, DONE / FAILED) for the viewer's runs page

sft/ and rl/ hold only what differs (the data, the step, the entry script); neither imports the other.
"""
