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


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory):
    """A GCS-API emulator and an S3-API server on loopback for the whole session (see tests/object_stores.py);
    the clients in this process are pointed at them too. Skips where the servers are not installed."""
    from object_stores import start_object_stores

    try:
        stores = start_object_stores(tmp_path_factory.mktemp("object-store-logs"))
    except FileNotFoundError as e:
        pytest.skip(f"{e} (pip install the cloud extra's test servers)")
    saved = {k: os.environ.get(k) for k in stores.env}
    stores.apply()
    yield stores
    stores.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
