"""Appends to history in batches: the batcher (I/O) and its plan (pure)."""
