"""The serving graph's header step: format, size and problem code of encoded image bytes, from
their headers only (string and integer ops; nothing here can fail or allocate pixels).

JPEG: the first SOF segment, found by walking the marker segments as libjpeg does; PNG: IHDR;
GIF: the logical screen, times the number of frames (TensorFlow's GIF decoder decodes every
frame); BMP: the DIB header; WebP: the VP8, VP8L or VP8X header; HEIC/HEIF and AVIF by their
ISO-BMFF brand (known, and refused by :mod:`tlkit.export.serving_decode`).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tlkit.data.images import AVIF_BRANDS, HEIF_BRANDS, MAX_PIXELS

# Format codes (index into FORMAT_NAMES).
JPEG, PNG, GIF, BMP, WEBP, HEIF, AVIF = 1, 2, 3, 4, 5, 6, 7
FORMAT_NAMES = ("unknown", "JPEG", "PNG", "GIF", "BMP", "WebP", "HEIC/HEIF", "AVIF")
# Problem codes of the header step (UNSUPPORTED: a known format the graph does not decode).
OK, NOT_IMAGE, BAD_HEADER, TOO_LARGE, UNSUPPORTED = 0, 1, 2, 3, 4
# JPEG markers whose segment holds the frame size (SOF0..SOF15 without DHT, JPG, DAC).
_SOF = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_MAX_JPEG_SEGMENTS = 4096  # segments before the frame header; real files have a few dozen
_PAD = 16  # zero bytes appended so fixed-offset reads past a short input read 0, not fail


def _read_bytes(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(int32 byte values padded with zeros, true length) of a scalar string."""
    values = tf.io.decode_raw(data + b"\0" * _PAD, tf.uint8)
    return tf.cast(values, tf.int32), tf.strings.length(data)


def _at(b: tf.Tensor, pos: Any) -> tf.Tensor:
    """Byte ``pos`` of ``b`` as int64 (0 past the end: ``b`` carries :data:`_PAD` zeros)."""
    pos = tf.clip_by_value(tf.cast(pos, tf.int32), 0, tf.shape(b)[0] - 1)
    return tf.cast(tf.gather(b, pos), tf.int64)


def _be(b: tf.Tensor, pos: Any, n: int) -> tf.Tensor:
    out = tf.constant(0, tf.int64)
    for k in range(n):
        out = out * 256 + _at(b, pos + k)
    return out


def _le(b: tf.Tensor, pos: Any, n: int) -> tf.Tensor:
    out = tf.constant(0, tf.int64)
    for k in reversed(range(n)):
        out = out * 256 + _at(b, pos + k)
    return out


def _jpeg_size(b: tf.Tensor, length: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(found, height, width) from the first SOF segment; walks markers from byte 2 (after SOI)."""
    length = tf.cast(length, tf.int64)
    sof = tf.constant(_SOF, tf.int64)

    def cond(pos, found, done, h, w, steps):
        return tf.logical_and(tf.logical_not(done), steps < _MAX_JPEG_SEGMENTS)

    def body(pos, found, done, h, w, steps):
        lead, marker = _at(b, pos), _at(b, pos + 1)
        seg_len = _be(b, pos + 2, 2)
        out_of_data = pos + 4 > length
        bad_lead = tf.not_equal(lead, 0xFF)  # libjpeg would skip garbage; a damaged header is refused
        fill = tf.equal(marker, 0xFF)
        is_sof = tf.reduce_any(tf.equal(marker, sof))
        standalone = tf.logical_or(
            tf.logical_or(tf.equal(marker, 0x01), tf.equal(marker, 0xD8)),
            tf.logical_and(marker >= 0xD0, marker <= 0xD7),
        )
        ends = tf.logical_or(tf.equal(marker, 0xD9), tf.equal(marker, 0xDA))  # EOI or scan before a frame
        sof_ok = tf.logical_and(is_sof, pos + 9 <= length)
        stop = out_of_data | bad_lead | ends | is_sof | (~fill & ~standalone & (seg_len < 2))
        nxt = tf.where(fill, pos + 1, tf.where(standalone, pos + 2, pos + 2 + seg_len))
        h = tf.where(sof_ok & ~out_of_data & ~bad_lead, _be(b, pos + 5, 2), h)
        w = tf.where(sof_ok & ~out_of_data & ~bad_lead, _be(b, pos + 7, 2), w)
        found = sof_ok & ~out_of_data & ~bad_lead
        return nxt, found, stop, h, w, steps + 1

    zero = tf.constant(0, tf.int64)
    _, found, _, h, w, _ = tf.while_loop(
        cond,
        body,
        (tf.constant(2, tf.int64), tf.constant(False), tf.constant(False), zero, zero, tf.constant(0, tf.int32)),
    )
    return found, h, w


def _webp_size(b: tf.Tensor, data: tf.Tensor, length: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(readable, height, width, frames) of a WebP from its first chunk: VP8 (lossy), VP8L
    (lossless) or VP8X (extended: the canvas; frames 0 when its animation flag is set)."""
    chunk = tf.strings.substr(tf.strings.join([data, b"\0" * _PAD]), 12, 4)
    one = tf.constant(1, tf.int64)
    lossy = (length >= 30) & tf.equal(_be(b, 23, 3), 0x9D012A)
    bits = _le(b, 21, 4)
    lossless = (length >= 25) & tf.equal(_at(b, 20), 0x2F)
    animated = tf.bitwise.bitwise_and(_at(b, 20), 2) > 0
    sizes = [
        (tf.equal(chunk, b"VP8 ") & lossy, _le(b, 28, 2) % 16384, _le(b, 26, 2) % 16384, one),
        (tf.equal(chunk, b"VP8L") & lossless, (bits // 16384) % 16384 + 1, bits % 16384 + 1, one),
        (
            tf.equal(chunk, b"VP8X") & (length >= 30),
            _le(b, 27, 3) + 1,
            _le(b, 24, 3) + 1,
            tf.where(animated, tf.constant(0, tf.int64), one),
        ),
    ]
    ok, h, w, frames = tf.constant(False), tf.constant(0, tf.int64), tf.constant(0, tf.int64), one
    for flag, fh, fw, ff in reversed(sizes):
        ok, h, w = tf.where(flag, True, ok), tf.where(flag, fh, h), tf.where(flag, fw, w)
        frames = tf.where(flag, ff, frames)
    return ok, h, w, frames


def _gif_frames(b: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Number of image descriptors, walking the GIF's blocks as giflib does (at least 1).

    One loop step per block or data sub-block (<= 256 bytes), so the walk is linear in the
    request's size. It stops at the trailer, at the end of the data or at an unknown block
    (where giflib stops with an error too).
    """
    length = tf.cast(length, tf.int64)
    packed = _at(b, 10)
    gct = tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0)

    def cond(pos, frames, in_sub, done):
        return tf.logical_and(tf.logical_not(done), pos < length)

    def body(pos, frames, in_sub, done):
        c = _at(b, pos)
        # In a run of data sub-blocks: skip one (size byte + data); size 0 ends the run.
        sub_next = pos + 1 + c
        sub_in = tf.not_equal(c, 0)
        image = tf.equal(c, 0x2C)
        ext = tf.equal(c, 0x21)
        lct_packed = _at(b, pos + 9)
        lct = tf.where(lct_packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), lct_packed % 8), 0)
        # Image descriptor (10 bytes) + local colour table + LZW code size byte, then sub-blocks;
        # extension: introducer + label, then sub-blocks.
        blk_next = tf.where(image, pos + 10 + lct + 1, pos + 2)
        blk_done = ~image & ~ext  # trailer (0x3B) or an unknown block
        return (
            tf.where(in_sub, sub_next, blk_next),
            frames + tf.cast(~in_sub & image, tf.int64),
            tf.where(in_sub, sub_in, ~blk_done),
            tf.where(in_sub, tf.constant(False), blk_done),
        )

    _, frames, _, _ = tf.while_loop(
        cond, body, (13 + gct, tf.constant(0, tf.int64), tf.constant(False), tf.constant(False))
    )
    return tf.maximum(frames, 1)


def header_info(data: tf.Tensor, max_pixels: int = MAX_PIXELS) -> dict[str, tf.Tensor]:
    """Format, size and problem code of one encoded image (scalar string), from its header only.

    Returns int64 scalars ``format`` (index into :data:`FORMAT_NAMES`), ``problem`` (OK,
    NOT_IMAGE, BAD_HEADER, TOO_LARGE), ``height``, ``width``, ``frames`` and ``pixels``
    (height x width x frames, float64 so that no header can overflow it). No op here fails.
    """
    b, length = _read_bytes(data)
    length = tf.cast(length, tf.int64)
    head = tf.strings.substr(tf.strings.join([data, b"\0" * _PAD]), 0, _PAD)  # padded: fixed offsets never fail
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(tf.strings.substr(head, 0, 8), b"\x89PNG\r\n\x1a\n")
    is_gif = tf.equal(tf.strings.substr(head, 0, 4), b"GIF8")
    is_bmp = tf.equal(tf.strings.substr(head, 0, 2), b"BM")
    is_webp = tf.equal(tf.strings.substr(head, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    brand = tf.strings.substr(head, 8, 4)
    is_bmff = tf.equal(tf.strings.substr(head, 4, 4), b"ftyp")
    is_heif = is_bmff & tf.reduce_any(tf.equal(brand, tf.constant([b.decode() for b in HEIF_BRANDS])))
    is_avif = is_bmff & tf.reduce_any(tf.equal(brand, tf.constant([b.decode() for b in AVIF_BRANDS])))
    fmt = tf.constant(0, tf.int64)
    for flag, code in ((is_avif, AVIF), (is_heif, HEIF), (is_webp, WEBP), (is_bmp, BMP), (is_gif, GIF)):
        fmt = tf.where(flag, tf.constant(code, tf.int64), fmt)
    fmt = tf.where(is_png, tf.constant(PNG, tf.int64), fmt)
    fmt = tf.where(is_jpeg, tf.constant(JPEG, tf.int64), fmt)
    zero = tf.constant(0, tf.int64)

    def jpeg():
        found, h, w = _jpeg_size(b, length)
        return found, h, w, tf.constant(1, tf.int64)

    def png():
        ok = (length >= 33) & tf.equal(tf.strings.substr(data, 12, 4), b"IHDR")
        return ok, _be(b, 20, 4), _be(b, 16, 4), tf.constant(1, tf.int64)

    def gif():
        return length >= 13, _le(b, 8, 2), _le(b, 6, 2), _gif_frames(b, length)

    def bmp():
        # As TensorFlow's BMP decoder reads it: int32 width at 18, int32 height at 22 (negative: top-down).
        w, h = _le(b, 18, 4), _le(b, 22, 4)
        w = tf.where(w >= 2**31, w - 2**32, w)
        h = tf.where(h >= 2**31, h - 2**32, h)
        return (length >= 26) & (w > 0), tf.abs(h), w, tf.constant(1, tf.int64)

    def webp():
        return _webp_size(b, data, length)

    def unknown():
        return tf.constant(False), zero, zero, zero

    def unsupported():  # HEIC/HEIF, AVIF: known, not decodable here
        return tf.constant(True), tf.constant(1, tf.int64), tf.constant(1, tf.int64), tf.constant(1, tf.int64)

    readable, h, w, frames = tf.switch_case(
        tf.cast(fmt, tf.int32), [unknown, jpeg, png, gif, bmp, webp, unsupported, unsupported]
    )
    readable = readable & (h > 0) & (w > 0)
    pixels = tf.cast(h, tf.float64) * tf.cast(w, tf.float64) * tf.cast(frames, tf.float64)
    # An animated WebP (frames 0 marks it) is refused: TensorFlow decodes its frames only as RGBA video.
    not_served = (fmt >= HEIF) | (tf.equal(fmt, WEBP) & tf.equal(frames, 0))
    problem = tf.where(
        tf.equal(fmt, 0),
        NOT_IMAGE,
        tf.where(
            not_served,
            UNSUPPORTED,
            tf.where(~readable, BAD_HEADER, tf.where(pixels > float(max_pixels), TOO_LARGE, OK)),
        ),
    )
    return {
        "format": fmt,
        "problem": tf.cast(problem, tf.int64),
        "height": h,
        "width": w,
        "frames": frames,
        "pixels": pixels,
    }
