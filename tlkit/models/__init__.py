"""Keras 3 builders, one module per architecture family (backend-neutral layers only)."""
