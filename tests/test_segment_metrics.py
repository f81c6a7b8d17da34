"""Segmentation metrics against figures worked out by hand (tlkit/segment/metrics.py, keras_metrics.py)."""

import numpy as np
import pytest

from tlkit.segment import metrics as M

CLASSES = ["background", "cat", "dog", "bird"]
# 4x4 truth with one ignore pixel; "bird" is in neither truth nor prediction.
TRUTH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 1], [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 2, 1], [2, 2, 0, 2]])
# By hand, rows = truth: bg 6 px (4 right, 1 as cat, 1 as dog), cat 5 (4 right, 1 as bg), dog 4 (3 right,
# 1 as bg); the ignore pixel (predicted dog) is not counted.
CONF = [[4, 1, 1, 0], [1, 4, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]]


def test_confusion_and_scores_match_the_hand_computed_4x4_example():
    conf = M.confusion(TRUTH, PRED, 4)
    assert conf.dtype == np.int64 and conf.tolist() == CONF
    s = M.scores(conf, CLASSES)
    # IoU: bg 4/(6+6-4)=1/2, cat 4/(5+5-4)=2/3, dog 3/(4+4-3)=3/5; bird absent: left out of the mean.
    assert s["per_class"]["background"]["iou"] == pytest.approx(1 / 2, abs=1e-15)
    assert s["per_class"]["cat"]["iou"] == pytest.approx(2 / 3, abs=1e-15)
    assert s["per_class"]["dog"]["iou"] == pytest.approx(3 / 5, abs=1e-15)
    assert s["per_class"]["bird"] == {"iou": None, "accuracy": None, "pixels": 0, "predicted": 0}
    assert s["absent"] == ["bird"] and s["classes_scored"] == 3
    assert s["mean_iou"] == pytest.approx(53 / 90, abs=1e-15)  # (1/2 + 2/3 + 3/5) / 3
    assert s["pixel_accuracy"] == pytest.approx(11 / 15, abs=1e-15)
    assert s["mean_accuracy"] == pytest.approx(133 / 180, abs=1e-15)  # (4/6 + 4/5 + 3/4) / 3
    assert s["frequency_weighted_iou"] == pytest.approx(131 / 225, abs=1e-15)  # (6/2 + 5*2/3 + 4*3/5) / 15
    assert s["pixels"] == 15 and s["per_class"]["cat"]["pixels"] == 5 and s["per_class"]["dog"]["predicted"] == 4


def test_logits_are_argmaxed_and_ignore_pixels_never_count():
    logits = np.eye(4)[PRED] * 5.0 - 1.0
    assert M.confusion(TRUTH, logits, 4).tolist() == CONF
    # Whatever is predicted on the ignore pixel changes nothing.
    other = PRED.copy()
    other[2, 2] = 0
    assert M.confusion(TRUTH, other, 4).tolist() == CONF
    # A class predicted but never true has IoU 0 and is counted in the mean.
    s = M.scores(M.confusion(np.zeros((2, 2), int), np.array([[0, 3], [0, 0]]), 4), CLASSES)
    assert s["per_class"]["bird"]["iou"] == 0.0 and s["absent"] == ["cat", "dog"]
    assert s["mean_iou"] == pytest.approx((3 / 4 + 0) / 2)
    with pytest.raises(ValueError, match="class 7"):
        M.confusion(np.array([[7]]), np.array([[0]]), 4)
    with pytest.raises(ValueError, match="does not match"):
        M.confusion(TRUTH, PRED[:3], 4)


def test_boundary_band_of_a_square_has_the_hand_counted_pixels():
    truth = np.zeros((16, 16), int)
    truth[4:12, 4:12] = 1  # an 8x8 square
    for width, inside, outside in ((1, 64 - 36, 100 - 64), (2, 64 - 16, 144 - 64), (3, 64 - 4, 196 - 64)):
        band = M.boundary_band(truth, width)
        assert band[truth == 1].sum() == inside and band[truth == 0].sum() == outside
    band = M.boundary_band(truth, 1)
    assert band[4, 4] and band[3, 3] and band[11, 7] and not band[5, 5] and not band[2, 7] and not band[0, 0]
    assert not M.boundary_band(np.zeros((5, 5), int)).any()  # the image edge is not a boundary
    # Predicting all background: in the width-1 band 36 of 64 pixels are right; the square's IoU is 0.
    b = M.boundary_scores(truth, np.zeros_like(truth), 2, ["bg", "square"], width=1)
    assert b["pixels"] == 64 and b["pixel_accuracy"] == 36 / 64
    assert b["per_class"]["square"]["iou"] == 0.0 and b["mean_iou"] == pytest.approx(36 / 64 / 2)


def test_streaming_over_three_batches_equals_one_big_batch():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.repeat(rng.integers(0, 4, (9, 6, 6)), 4, axis=1), 4, axis=2)  # blocky regions
    truth[rng.random(truth.shape) < 0.05] = 255
    logits = rng.normal(size=(*truth.shape, 4)) + 2.0 * np.eye(4)[np.where(truth == 255, 0, truth)]
    whole = M.StreamingScores(4, CLASSES)
    whole.update(truth, logits)
    parts = M.StreamingScores(4, CLASSES)
    for lo, hi in ((0, 2), (2, 7), (7, 9)):
        parts.update(truth[lo:hi], logits[lo:hi])
    a, b = whole.result(), parts.result()
    assert a == b and a["images"] == 9 and a["boundary"]["pixels"] > 0
    assert a["confusion"] == M.confusion(truth, logits, 4).tolist()
    assert a["boundary_confusion"] == M.boundary_confusion(truth, logits, 4).tolist()
    assert 0 < a["boundary"]["pixels"] < a["pixels"]
    assert a["pixels"] == int((truth != 255).sum())


def test_keras_mean_iou_equals_the_numpy_mean_iou_in_evaluate():
    keras = pytest.importorskip("keras")
    from tlkit.segment.keras_metrics import mean_iou_metric

    logits = (np.eye(4, dtype="float32")[PRED] * 3.0 - 1.0)[None].repeat(3, 0)
    truth = TRUTH[None].repeat(3, 0)
    x = keras.Input((4, 4, 4))
    model = keras.Model(x, keras.layers.Identity()(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    model.compile(loss=loss, metrics=[mean_iou_metric(4)])
    got = model.evaluate(logits, truth, batch_size=2, return_dict=True, verbose=0)
    # Batches of 2 and 1, absent "bird" left out, the ignore pixel dropped: 53/90 to float32 precision.
    assert got["mean_iou"] == pytest.approx(53 / 90, abs=1e-6)
