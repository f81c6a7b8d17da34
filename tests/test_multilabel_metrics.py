"""Multi-label thresholds and figures (tlkit.multilabel_metrics) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from tlkit import multilabel_metrics as mm


@pytest.mark.parametrize(
    ("y", "scores", "want", "f1"),
    [
        # 0.9: F1 2/3; 0.8: 1/2; 0.3: 4/5 (best); 0.2: 2/3
        ([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2], 0.3, 0.8),
        # 0.9 and 0.5 both give F1 2/3: the higher threshold wins
        ([1, 0, 0, 1], [0.9, 0.7, 0.6, 0.5], 0.9, 2 / 3),
        # equal scores are one threshold: 0.8 predicts both (F1 2/3), 0.1 all three (1/2)
        ([1, 0, 0], [0.8, 0.8, 0.1], 0.8, 2 / 3),
        # every positive above every negative: F1 1 at the lowest positive's score
        ([0, 1, 1, 0], [0.2, 0.95, 0.6, 0.55], 0.6, 1.0),
    ],
)
def test_best_f1_threshold(y, scores, want, f1):
    t, got_f1 = mm.best_f1_threshold(np.array(y), np.array(scores, dtype=np.float32))
    assert t == pytest.approx(want, abs=1e-7)
    assert got_f1 == pytest.approx(f1)
    # The rule is score >= threshold: the chosen threshold reproduces that F1.
    pred = np.array(scores, dtype=np.float32) >= np.float32(t)
    tp = int((pred & (np.array(y) == 1)).sum())
    assert 2 * tp / (pred.sum() + sum(y)) == pytest.approx(f1)


def test_choose_thresholds_default_for_a_class_without_positive():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.7, 0.9], [0.2, 0.1], [0.6, 0.3]], dtype=np.float32)
    thresholds, notes = mm.choose_thresholds(y, s, ["a", "b"])
    assert thresholds == [pytest.approx(0.6), 0.5]
    assert len(notes) == 1 and "'b'" in notes[0] and "0.5" in notes[0]


def test_metrics_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.3], [0.1, 0.8]])
    m = mm.multilabel_metrics(y, s, ["a", "b"], [0.5, 0.5])
    a, b = m["per_class"]["a"], m["per_class"]["b"]
    assert (a["ap"], a["f1"], a["support"], a["predicted"]) == (1.0, 1.0, 2, 2)
    # b: ranked 0.8(-) 0.7(+) 0.3(+) 0.2(-): AP = 0.5 * 1/2 + 0.5 * 2/3; at 0.5: tp 1, fp 1, fn 1
    assert b["ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert (b["f1"], b["precision"], b["recall"]) == (0.5, 0.5, 0.5)
    assert m["macro_ap"] == pytest.approx((1 + 0.5 * 0.5 + 0.5 * 2 / 3) / 2)
    # pooled ranking 0.9+ 0.8- 0.7+ 0.6+ 0.4- 0.3+ ...: AP = (1 + 2/3 + 3/4 + 4/6) / 4
    assert m["micro_ap"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 6) / 4)
    assert m["micro_f1"] == pytest.approx(6 / 8)  # tp 3, fp 1, fn 1
    assert m["macro_f1"] == pytest.approx(0.75)
    assert m["exact_match"] == 0.5  # images 1 and 2 right; 3 misses b, 4 adds b
    assert m["count"] == 4 and m["thresholds"] == [0.5, 0.5]


def test_a_class_without_positive_has_no_ap_and_leaves_the_macro_figures():
    y = np.array([[1, 0], [0, 0]])
    s = np.array([[0.9, 0.8], [0.1, 0.2]])
    m = mm.multilabel_metrics(y, s, ["a", "b"], [0.5, 0.5])
    assert m["per_class"]["b"]["ap"] is None
    assert m["macro_ap"] == 1.0 and m["macro_f1"] == 1.0
    assert m["micro_f1"] == pytest.approx(2 / 3)  # tp 1, fp 1 (b on image 1), fn 0


def test_labels_above_and_table():
    s = np.array([[0.9, 0.5, 0.49], [0.1, 0.2, 0.3]], dtype=np.float32)
    got = mm.labels_above(s, [0.5, 0.5, 0.5], ["a", "b", "c"])
    assert [[n for n, _ in row] for row in got] == [["a", "b"], []]  # at the threshold counts
    m = mm.multilabel_metrics(np.array([[1, 1, 0], [0, 0, 1]]), s, ["a", "b", "c"], [0.5, 0.5, 0.5])
    lines = mm.table(m)
    assert lines[0].split() == ["class", "AP", "F1", "precision", "recall", "support", "threshold"]
    assert lines[-1].startswith("macro AP ") and "micro F1 0.8000" in lines[-1]  # tp 2, fp 0, fn 1
