"""Images of samples: decoding, checking and storing them once by sha256 (store.py)."""
