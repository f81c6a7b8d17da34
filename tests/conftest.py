"""Shared test set-up: quiet TensorFlow, the TensorFlow backend, deterministic seeds."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable numerics on CPU


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def frozen_gc():
    """Freeze what exists now so per-test collections scan only the models a test makes
    (a full pass over TensorFlow's object graph costs 0.2-0.5 s each time)."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture()
def free_models(frozen_gc):
    """Release each test's models (full-size VGG holds ~0.5 GB of weights)."""
    import keras

    yield
    keras.backend.clear_session()
    gc.collect()
