"""Data: corpora on disk, audio features, the batched input pipeline."""
