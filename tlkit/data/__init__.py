"""Data: sources, splits, preflight, decoding, resizing and the tf.data pipeline."""
