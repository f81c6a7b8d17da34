"""Reading objects on a bucket inside a ``tf.data`` pipeline, with decoding left in the graph.

TensorFlow's file system does not read ``s3://`` (that moved to tensorflow-io), and one client
for both stores keeps one code path (:mod:`tlkit.storage.remote`), so objects are fetched
through fsspec (:func:`tlkit.storage.objects.read_many`): the paths are batched, one
``tf.numpy_function`` per batch fetches the batch's objects concurrently (one round trip's wait
for :data:`FETCH_BATCH` objects, not one each), and the batch is unbatched back into single
files' bytes for the pipeline's own decode (:func:`tlkit.data.decode.decode_bytes`), which stays
parallel and in the graph. Several batches are in flight at once (``num_parallel_calls``).
Local paths never come here: their pipeline reads with ``tf.io.read_file`` as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tlkit.data.sharding import OPENED_ENV

FETCH_BATCH = 32  # objects per request batch: enough to hide a round trip, small enough to keep decoding fed


def any_remote(paths: Sequence[str]) -> bool:
    """True if any path is a ``gs://`` or ``s3://`` object (then the pipeline fetches through fsspec)."""
    from tlkit.storage.remote import is_remote

    return any(is_remote(p) for p in paths)


def fetch_first(ds: Any, *, skip_missing: bool = False) -> Any:
    """``ds`` whose elements are ``path`` or ``(path, *rest)`` with each path replaced by the file's bytes.

    Order and the other components are kept. A read that fails raises (one tlkit line naming the
    object); with ``skip_missing`` it gives empty bytes instead, which the decoder then refuses,
    so ``ignore_errors`` drops that one file as it drops an undecodable one.
    """
    import numpy as np
    import tensorflow as tf

    def fetch(paths: np.ndarray) -> np.ndarray:
        from tlkit.storage.objects import read_many
        from tlkit.storage.remote import storage_error

        names = [p.decode() for p in paths]
        out = []
        for name, data in zip(names, read_many(names)):
            if isinstance(data, BaseException):
                if not skip_missing:
                    raise storage_error(name, data, "read") from data
                data = b""
            out.append(data)
        return np.array(out, dtype=object)

    def one_batch(*xs: Any) -> Any:
        data = tf.ensure_shape(tf.numpy_function(fetch, [xs[0]], tf.string, stateful=False), [None])
        return data if len(xs) == 1 else (data, *xs[1:])

    n = tf.get_static_value(ds.cardinality())  # None inside a flat_map's function
    if os.environ.get(OPENED_ENV):
        # The file log's map before the batch: fused with it (map_and_batch_fusion), the multi-worker
        # iterator's graph rewrite fails ("can't delete node(s) with retained fanouts"); only when logging.
        options = tf.data.Options()
        options.experimental_optimization.map_and_batch_fusion = False
        ds = ds.with_options(options)
    out = ds.batch(FETCH_BATCH).map(one_batch, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if n is None or int(n) < 0:
        return out
    # unbatch hides the length, which Keras wants (progress bar, steps); the files are as many as before.
    return out.apply(tf.data.experimental.assert_cardinality(int(n)))
