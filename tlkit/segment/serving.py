"""The segmentation serving graph: image bytes in, a mask at the image's own size out.

``serving_default``: ``image_bytes`` (tf.string [B]) -> ``mask`` uint8 [B, H, W] (class index per
pixel) and ``scores`` float32 [B, H, W, C] (softmax per pixel), H x W the images' own size after
EXIF orientation. Decoding, the refusals of bad requests and the resize to the model's input are
the classifier export's (:func:`tlkit.export.serving_decode.decode_images`, ``plain`` resize: the
whole image, as validation images are fed); the model's logits are resized back to the image's
size (bilinear, half-pixel centres) before the softmax and the argmax (:func:`outputs_at`, which
``tlkit segment predict`` runs too). The images of one request must share one size (a
``tlkit serving:`` refusal names the first that does not). ``predict_pixels``: float32 pixels
[B, h, w, 3] at the model's input size -> ``mask``/``scores`` at that size.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tlkit.export.serving import SERVING_SIGNATURE, _Untracked, traced_signatures  # noqa: F401  (public here too)
from tlkit.export.serving_decode import BYTES_INPUT, PREFIX, _decode_one, _text, decode_images
from tlkit.export.verify import PIXELS_INPUT

RESIZE = "plain"


def outputs_at(logits: Any, size: Any) -> dict[str, tf.Tensor]:
    """``mask`` (uint8 [B, H, W]) and ``scores`` (float32 [B, H, W, C]) of logits [B, h, w, C] at ``size``."""
    up = tf.image.resize(tf.cast(logits, tf.float32), size, method="bilinear")
    return {"mask": tf.cast(tf.argmax(up, axis=-1), tf.uint8), "scores": tf.nn.softmax(up, axis=-1)}


def _own_size(image_bytes: tf.Tensor) -> tf.Tensor:
    """[2] int32: the (upright) height and width shared by every image of the request."""
    sizes = tf.map_fn(
        lambda d: tf.shape(_decode_one(d))[:2], image_bytes, fn_output_signature=tf.TensorSpec([2], tf.int32)
    )
    differs = tf.reduce_any(tf.not_equal(sizes, sizes[:1]), axis=1)
    first = tf.argmax(tf.cast(differs, tf.int32), output_type=tf.int32)
    message = _text(
        PREFIX + BYTES_INPUT + "[",
        first,
        "] is ",
        sizes[first][1],
        "x",
        sizes[first][0],
        ", image_bytes[0] is ",
        sizes[0][1],
        "x",
        sizes[0][0],
        ": the images of one request must share one size (masks come back at the image's size); "
        "send them in separate requests",
    )
    same = tf.debugging.Assert(tf.logical_not(tf.reduce_any(differs)), [message], summarize=1)
    with tf.control_dependencies([same]):
        return tf.identity(sizes[0])


class SegmentServing(tf.Module):
    """The exported object: the segmenter's variables and both signatures."""

    def __init__(self, model: Any, size: tuple[int, int], max_pixels: int) -> None:
        super().__init__(name="tlkit_segment_serving")
        self.size = (int(size[0]), int(size[1]))
        self.max_pixels = int(max_pixels)
        self._model = _Untracked(model)  # the Keras object untracked: loading needs neither Keras nor tlkit
        h, w = self.size
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
        )
        self.serve_pixels = tf.function(
            self._serve_pixels, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)]
        )

    def _logits(self, pixels: tf.Tensor) -> tf.Tensor:
        return self._model.obj(pixels, training=False)

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = decode_images(image_bytes, self.size, RESIZE, self.max_pixels)  # bad requests refused here
        with tf.control_dependencies([pixels]):
            size = _own_size(tf.reshape(image_bytes, [-1]))
        return outputs_at(self._logits(pixels), size)

    def _serve_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return outputs_at(self._logits(pixels), self.size)

    def signatures(self) -> dict[str, Any]:
        """Trace both signatures and track the tf.Variables they capture (as the classifier's export)."""
        return traced_signatures(self)
