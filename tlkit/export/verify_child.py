"""The SavedModel check's child process: a script run by path (never imported as a module), in
a fresh Python that cannot import tlkit, so the check proves the export stands alone.

``python verify_child.py SAVED_MODEL REQUEST_JSON PARENT_PID`` reads the request (probe images,
pixels, requests the server must refuse), loads the SavedModel with TensorFlow alone, and writes
the results (``REQUEST["out"]`` as .npz and .json). It dies with its parent. Started by
:func:`tlkit.export.verify.verify_export`.
"""

import os
import sys

# Run by path, Python put this folder first on sys.path: its modules (tflite.py, serving.py, ...)
# must not shadow anything TensorFlow imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]


def main() -> None:
    """The check (see the module docstring)."""
    import threading

    def _die_with_parent(parent):
        try:  # Linux: the kernel kills this process when the parent dies, however it dies
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        except Exception:
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(70)

        def watch():  # portable: stdin is a pipe from the parent; EOF means the parent is gone
            try:  # os.read, not sys.stdin: a buffered reader's lock would block interpreter shutdown
                while os.read(0, 65536):
                    pass
            finally:
                os._exit(70)

        threading.Thread(target=watch, daemon=True).start()

    _die_with_parent(int(sys.argv[3]))
    import json
    import time

    sys.modules["tlkit"] = None  # any attempt to import tlkit now fails
    import numpy as np
    import tensorflow as tf

    path, req_path = sys.argv[1], sys.argv[2]
    req = json.load(open(req_path))
    t0 = time.time()
    m = tf.saved_model.load(path)
    load_s = time.time() - t0

    def spec(s):
        return [s.dtype.name, [-1 if d is None else int(d) for d in s.shape]]

    def read(files):
        return [open(p, "rb").read() for p in files]

    sigs = {}
    for name, fn in m.signatures.items():
        inputs = {k: spec(v) for k, v in fn.structured_input_signature[1].items()}
        outputs = {k: spec(v) for k, v in fn.structured_outputs.items()}
        sigs[name] = {"inputs": inputs, "outputs": outputs}
    serve = m.signatures["serving_default"]
    pix = m.signatures["predict_pixels"]
    images = read(req["images"])
    pixels = np.load(req["pixels"])
    a = serve(image_bytes=tf.constant(images))
    b = pix(pixels=tf.constant(pixels))
    refusals = {}
    for name, files in req["refusals"].items():
        t = time.time()
        try:
            serve(image_bytes=tf.constant(read(files), dtype=tf.string))
            refusals[name] = {"error": None}
        except tf.errors.InvalidArgumentError as e:
            refusals[name] = {"error": e.message}
        refusals[name]["seconds"] = time.time() - t
    after = serve(image_bytes=tf.constant(images[:1]))
    # The way TensorFlow Serving and saved_model_cli run it: a TF1 session on the MetaGraph.
    v1 = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        mg = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        for name, feed in (("serving_default", images), ("predict_pixels", pixels)):
            sd = mg.signature_def[name]
            ((key, tinfo),) = sd.inputs.items()
            v1[name] = sess.run(sd.outputs["scores"].name, {tinfo.name: feed})
    asset = os.path.join(path, "assets", "labels.txt")
    labels = open(asset, encoding="utf-8").read().split("\n")[:-1]
    out = {k + "_bytes": a[k].numpy() for k in a}
    out.update({k + "_pixels": b[k].numpy() for k in b})
    out["scores_after_bad"] = after["scores"].numpy()
    out["scores_v1_bytes"] = v1["serving_default"]
    out["scores_v1_pixels"] = v1["predict_pixels"]
    np.savez(req["out"], **out)
    json.dump(
        {
            "signatures": sigs,
            "refusals": refusals,
            "labels": labels,
            "load_s": load_s,
            "tlkit_imported": sys.modules.get("tlkit") is not None,
        },
        open(req["out"] + ".json", "w"),
    )


if __name__ == "__main__":
    main()
