"""SFT training: examples and masks (masking.py, examples.py), batch plans (batching.py), tensors
(collate.py), configuration (config.py), the DeepSpeed loop (loop.py) run by entry.py under torchrun,
checkpoints (checkpoint.py), and the launcher that keys, prepares and streams a run (launch.py)."""
