"""Export a SavedModel for TensorFlow Serving, then query it the way a client would.

The export takes encoded image bytes (JPEG/PNG/BMP/GIF) and returns class scores and the
top-K labels: decoding, resizing and normalisation are inside the graph, so a client
needs nothing but TensorFlow (or an HTTP request to TF Serving). By default the
pretrained ImageNet classifier is exported; --run exports a finetuned run instead.

    python recipes/export_and_query.py [--run runs/efficientnet_lite0-builtin-digits --image 3.png]
    tlkit export --base efficientnet_lite0 --out saved_models/efficientnet_lite0
    tlkit export runs/efficientnet_lite0-builtin-digits
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path

import tensorflow as tf
from absl import app, flags, logging
from PIL import Image

from tlkit.export.savedmodel import export_base, export_run

flags.DEFINE_string("base", "efficientnet_lite0", "registry name of an ImageNet classifier to export")
flags.DEFINE_string("run", None, "export this finetuning run directory instead of --base")
flags.DEFINE_string("image", None, "image file to query with (default: scikit-image's cat photo)")
flags.DEFINE_string("workdir", None, "output folder (default: a new temporary folder)")
flags.DEFINE_bool(
    "smoke",
    False,
    "CI run: skip the export's own fresh-process verification (this recipe's query still checks the answer)",
)
FLAGS = flags.FLAGS

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


def cat_jpeg() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs a page of INFO lines per export
    # Absolute: the export is verified by a second process that runs in another folder.
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-export-")).resolve()
    verify = not FLAGS.smoke
    # 1. Export: OUT/1/ (saved_model.pb, variables/, assets/labels.txt, tlkit.json model card).
    if FLAGS.run:
        result = export_run(FLAGS.run, workdir / "saved_models" / Path(FLAGS.run).name, verify=verify)
    else:
        result = export_base(FLAGS.base, workdir / "saved_models" / FLAGS.base, verify=verify)
    print(
        f"exported {result.card['num_classes']} classes, input {result.card['input_size']} -> {result.path}"
        + (" (verified in a fresh process)" if verify else "")
    )

    # 2. Query: load it with plain TensorFlow and send the bytes of an image file.
    image_bytes = Path(FLAGS.image).read_bytes() if FLAGS.image else cat_jpeg()
    served = tf.saved_model.load(str(result.path))
    out = served.signatures["serving_default"](image_bytes=tf.constant([image_bytes]))
    labels = [v.decode() for v in out["top_k_labels"].numpy()[0]]
    scores = out["top_k_scores"].numpy()[0]
    print("answer: " + ", ".join(f"{lab} {s:.3f}" for lab, s in zip(labels, scores)))

    # 3. The same request for TF Serving's REST API (POST /v1/models/NAME:predict).
    request = {"instances": [{"image_bytes": {"b64": base64.b64encode(image_bytes).decode()}}]}
    (workdir / "request.json").write_text(json.dumps(request))
    print(f"REST request body: {workdir / 'request.json'}")

    if not FLAGS.image and not FLAGS.run and labels[0] not in CATS:
        raise SystemExit(f"FAILED: the SavedModel calls the cat photo {labels[0]!r}")
    if not 0.0 <= float(scores[0]) <= 1.0:
        raise SystemExit(f"FAILED: top score {scores[0]} is not a probability")
    print("ok")


if __name__ == "__main__":
    app.run(main)
