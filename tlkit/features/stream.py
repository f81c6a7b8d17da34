"""The input stream of ``tlkit extract``: one tf.data pipeline for the whole job, batched per part.

Decoding runs ahead across parts (one pipeline, prefetched), while no batch straddles two
parts: a resumed extraction starts at a part boundary and so computes every batch exactly
as the uninterrupted one did. Each element carries its path and part index, so a file the
decoder refuses (dropped here) is named by the caller.
"""

from __future__ import annotations

from typing import Any


def chunked_images(paths: list[str], *, chunk_rows: int, batch_size: int, size: tuple, channels: int) -> Any:
    """Batches of (decoded, resized images as :func:`tlkit.data.pipeline.images_dataset` gives them,
    their paths, their chunk index), each chunk of ``chunk_rows`` paths batched on its own (its last
    batch may be short), chunks in order; files that do not decode are left out."""
    import tensorflow as tf

    from tlkit.data import pipeline as tldata
    from tlkit.data import resize as rs
    from tlkit.data.decode import decode_bytes, decode_need, with_threading
    from tlkit.data.remote_read import any_remote, fetch_first

    size = (int(size[0]), int(size[1]))
    need = decode_need(size)
    every = tf.constant(paths if paths else [""], tf.string)
    n = len(paths)

    remote = any_remote(paths)

    def image(p: Any, c: Any) -> Any:
        x = rs.resize(tldata._decode_file(p, need), size)
        return (tf.image.rgb_to_grayscale(x) if channels == 1 else x), p, c

    def image_of_bytes(d: Any, p: Any, c: Any) -> Any:
        x = rs.resize(decode_bytes(d, need), size)
        return (tf.image.rgb_to_grayscale(x) if channels == 1 else x), p, c

    def chunk(c: Any) -> Any:
        lo = c * chunk_rows
        part = every[lo : tf.minimum(lo + chunk_rows, n)]
        if remote:  # objects on a bucket: (bytes, path, chunk), the bytes fetched in batches (tlkit.data.remote_read)
            keyed = tf.data.Dataset.from_tensor_slices((part, part, tf.fill(tf.shape(part), c)))
            ds = fetch_first(keyed, skip_missing=True)
            return ds.map(image_of_bytes, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().batch(batch_size)
        ds = tf.data.Dataset.from_tensor_slices((part, tf.fill(tf.shape(part), c)))
        # A file the decoder refuses is dropped here and named by the caller (its path never arrives).
        return ds.map(image, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().batch(batch_size)

    n_chunks = -(-n // chunk_rows)
    ds = tf.data.Dataset.range(n_chunks).flat_map(chunk)
    return with_threading(ds.prefetch(tf.data.AUTOTUNE))
