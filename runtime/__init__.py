"""Inference backends, engine build, tiling and comparison (installed as saphnet.runtime)."""
