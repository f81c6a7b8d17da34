"""EXIF orientation: read it from a JPEG's bytes and turn the decoded pixels upright.

Phones and cameras store a photo as the sensor read it and record how to turn it in the
EXIF tag Orientation (0x0112): 1 upright, 2..8 the seven other rotations and mirrorings.
Every photo viewer applies it, and so does :func:`PIL.ImageOps.exif_transpose`; libjpeg (and
``tf.io.decode_jpeg``) does not. tlkit applies it in each decode path, with one rule:

* the tag is read from the first APP1 segment that starts with ``Exif\\0\\0`` (the one PIL
  reads), found by walking the marker segments up to the first scan; then the TIFF header
  (byte order ``II`` or ``MM`` and 42), IFD0, and its entry 0x0112 (type SHORT or LONG);
* anything missing, malformed or outside 1..8 means 1 (leave the pixels as stored);
* only JPEG (and MPO, PIL's name for multi-picture JPEGs) is turned: PNG/WebP files rarely
  carry the tag, HEIF applies its own transforms when decoded, and viewers disagree there.

:func:`exif_orientation` (Python, on PIL's ``info["exif"]``) and :func:`jpeg_orientation`
(Python, on the file's bytes) serve the PIL path; :func:`tf_jpeg_orientation` and
:func:`tf_upright` do the same in a TensorFlow graph from the bytes (the input pipeline and
the SavedModel's serving signature), so every path sees the same upright pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TAG = 0x0112
EXIF_HEADER = b"Exif\x00\x00"
MAX_IFD_ENTRIES = 128  # IFD0 entries searched for the tag (cameras write 10 to 30)
MAX_SEGMENTS = 1024  # JPEG marker segments walked before giving up (real files have a few dozen)
SWAPS = (5, 6, 7, 8)  # orientations whose upright image has the stored width as its height


def _u(data: bytes, pos: int, n: int, little: bool) -> int | None:
    if pos < 0 or pos + n > len(data):
        return None
    return int.from_bytes(data[pos : pos + n], "little" if little else "big")


def tiff_orientation(tiff: bytes) -> int:
    """The Orientation of a TIFF/EXIF block (starting at its byte-order mark); 1 if none or malformed."""
    order = tiff[:4]
    if order not in (b"II*\x00", b"MM\x00*"):
        return 1
    little = order[:2] == b"II"
    ifd = _u(tiff, 4, 4, little)
    n = _u(tiff, ifd, 2, little) if ifd is not None else None
    if n is None:
        return 1
    for k in range(min(n, MAX_IFD_ENTRIES)):
        at = ifd + 2 + 12 * k
        tag, kind = _u(tiff, at, 2, little), _u(tiff, at + 2, 2, little)
        if tag is None or kind is None:
            return 1
        if tag == TAG:
            value = _u(tiff, at + 8, 2 if kind == 3 else 4, little) if kind in (3, 4) else None
            return value if value is not None and 1 <= value <= 8 else 1
    return 1


def exif_orientation(exif: bytes | None) -> int:
    """The Orientation of an APP1 EXIF payload (``Exif\\0\\0`` + TIFF, PIL's ``info["exif"]``); 1 if none."""
    if not exif or not exif.startswith(EXIF_HEADER):
        return 1
    return tiff_orientation(exif[len(EXIF_HEADER) :])


def jpeg_orientation(data: bytes) -> int:
    """The Orientation of a JPEG file's bytes (see the module doc); 1 if none, or not a JPEG."""
    if data[:3] != b"\xff\xd8\xff":
        return 1
    pos, n = 2, len(data)
    for _ in range(MAX_SEGMENTS):
        if pos + 4 > n or data[pos] != 0xFF:
            return 1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan: no EXIF before it
            return 1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return 1
        if marker == 0xE1 and data[pos + 4 : pos + 10] == EXIF_HEADER:
            return tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return 1


def upright_numpy(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` [H, W, C] as stored, turned upright for ``orientation`` (as ``exif_transpose``)."""
    turns = {
        2: lambda x: x[:, ::-1],  # mirrored left-right
        3: lambda x: x[::-1, ::-1],  # 180 degrees
        4: lambda x: x[::-1],  # mirrored top-bottom
        5: lambda x: x.swapaxes(0, 1),  # transpose
        6: lambda x: np.rot90(x, -1),  # 90 degrees clockwise
        7: lambda x: np.rot90(x, 2).swapaxes(0, 1),  # transverse
        8: lambda x: np.rot90(x, 1),  # 90 degrees counter-clockwise
    }
    if orientation in turns:
        image = turns[orientation](image)
    return np.ascontiguousarray(image)


def stored_numpy(image: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of :func:`upright_numpy`: how a camera stores an upright ``image`` under ``orientation``."""
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the others are their own inverses
    return upright_numpy(image, inverse)


# --- in a TensorFlow graph ---------------------------------------------------------------------


def tf_jpeg_orientation(data: Any) -> Any:
    """:func:`jpeg_orientation` in the graph: int32 scalar 1..8 from a scalar string of JPEG bytes.

    Walks the marker segments with a bounded ``tf.while_loop`` (as the serving header check
    does), reading a few bytes per step with ``substr`` (the file is never copied whole: a
    camera photo has megabytes after a header of a few kilobytes), then reads IFD0's entries
    at once, vectorised over at most :data:`MAX_IFD_ENTRIES`. No op here fails: anything
    unexpected gives 1, as in the Python reader.
    """
    import tensorflow as tf

    n = tf.cast(tf.strings.length(data), tf.int64)

    def piece(pos: Any, k: int) -> Any:
        """Bytes pos..pos+k as int64 [k]; zeros past the end of the data."""
        s = tf.strings.substr(data, tf.clip_by_value(pos, 0, n), k)
        s = tf.strings.substr(tf.strings.join([s, b"\0" * k]), 0, k)
        return tf.reshape(tf.cast(tf.io.decode_raw(s, tf.uint8), tf.int64), [k])

    exif_header = tf.constant(list(EXIF_HEADER), tf.int64)

    def cond(pos, found, done, steps):
        return tf.logical_and(tf.logical_not(done), steps < MAX_SEGMENTS)

    def body(pos, found, done, steps):
        h = piece(pos, 10)
        lead, marker, seg_len = h[0], h[1], h[2] * 256 + h[3]
        fill = tf.equal(marker, 0xFF)
        standalone = tf.equal(marker, 0x01) | ((marker >= 0xD0) & (marker <= 0xD8))
        exif = tf.equal(marker, 0xE1) & (pos + 10 <= n) & tf.reduce_all(tf.equal(h[4:10], exif_header))
        bad = (pos + 4 > n) | tf.not_equal(lead, 0xFF) | tf.equal(marker, 0xD9) | tf.equal(marker, 0xDA)
        bad = bad | (~fill & ~standalone & (seg_len < 2))
        hit = ~bad & ~fill & ~standalone & exif
        nxt = tf.where(fill, pos + 1, tf.where(standalone, pos + 2, pos + 2 + seg_len))
        return nxt, tf.where(hit, pos, found), bad | hit, steps + 1

    zero = tf.constant(0, tf.int64)
    _, seg, _, _ = tf.while_loop(
        cond, body, (zero + 2, zero - 1, tf.constant(False), tf.constant(0)), parallel_iterations=1
    )
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    seg_head = piece(seg, 4)
    t = seg + 10  # the TIFF block: after the marker, the length and Exif\0\0
    end = tf.minimum(seg + 2 + seg_head[2] * 256 + seg_head[3], n)  # it ends with its segment (or the file)

    hdr = piece(t, 8)
    little = tf.reduce_all(tf.equal(hdr[:4], [0x49, 0x49, 0x2A, 0]))
    big = tf.reduce_all(tf.equal(hdr[:4], [0x4D, 0x4D, 0, 0x2A]))

    def number(b: Any) -> Any:
        """Unsigned integers from the last axis of ``b`` in the block's byte order."""
        k = b.shape[-1]
        weights_le = tf.constant([256**i for i in range(k)], tf.int64)
        return tf.reduce_sum(b * tf.where(little, weights_le, tf.reverse(weights_le, [0])), axis=-1)

    ifd = number(hdr[4:8])
    ifd_at = t + tf.minimum(ifd, 1 << 40)
    block = piece(ifd_at, 2 + 12 * MAX_IFD_ENTRIES)
    count = number(block[:2])
    entries = tf.reshape(block[2:], [MAX_IFD_ENTRIES, 12])
    at = ifd_at + 2 + 12 * tf.range(MAX_IFD_ENTRIES, dtype=tf.int64)
    tags, kinds = number(entries[:, 0:2]), number(entries[:, 2:4])
    k = tf.range(MAX_IFD_ENTRIES, dtype=tf.int64)
    # As the Python reader: entries in order, up to count; an entry cut by the end stops the search.
    readable = tf.cumsum(tf.cast(at + 4 > end, tf.int32)) == 0
    hits = (k < count) & readable & tf.equal(tags, TAG)
    first = tf.argmax(tf.cast(hits, tf.int32), output_type=tf.int32)
    kind = tf.gather(kinds, first)
    short = tf.equal(kind, 3)
    value = tf.where(short, number(tf.gather(entries, first)[8:10]), number(tf.gather(entries, first)[8:12]))
    value_fits = tf.gather(at, first) + 8 + tf.where(short, zero + 2, zero + 4) <= end
    ok = is_jpeg & (seg >= 0) & (little | big) & (t + 8 <= end) & (ifd_at + 2 <= end) & tf.reduce_any(hits)
    ok = ok & ((kind == 3) | (kind == 4)) & value_fits & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(ok, value, 1), tf.int32)


def tf_upright(image: Any, orientation: Any) -> Any:
    """:func:`upright_numpy` in the graph: ``image`` [H, W, C] turned upright for an int32 ``orientation``."""
    import tensorflow as tf

    def transpose(x: Any) -> Any:
        return tf.transpose(x, [1, 0, 2])

    # Only transposes and reverses: tf.image.rot90 adds Assert ops, which make the decode function
    # stateful, and under op determinism (--deterministic) tf.data then runs the whole decode map
    # sequentially (and logs a NodeDef error line for the rewrite).

    branches = [
        lambda: image,  # 1
        lambda: tf.reverse(image, [1]),  # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),  # 3: 180 degrees
        lambda: tf.reverse(image, [0]),  # 4: mirrored top-bottom
        lambda: transpose(image),  # 5: transpose
        lambda: tf.reverse(transpose(image), [1]),  # 6: 90 degrees clockwise
        lambda: transpose(tf.reverse(image, [0, 1])),  # 7: transverse
        lambda: tf.reverse(transpose(image), [0]),  # 8: 90 degrees counter-clockwise
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    out = tf.switch_case(index, branches)
    out.set_shape([None, None, image.shape[-1]])
    return out
