"""RunDir owns "best.keras, else last.keras": evaluate, dense-eval and export all load what it chooses."""

import json

import keras
import numpy as np
import pytest

from tlkit.dense.evaluator import load_run_model
from tlkit.errors import NotFoundError
from tlkit.finetune.evaluation_runs import load_run
from tlkit.finetune.rundir import RunDir


def _model(favourite: int) -> keras.Model:
    inp = keras.Input((4,))
    out = keras.layers.Dense(
        2,
        activation="softmax",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([5.0 * (1 - favourite), 5.0 * favourite]),
    )(inp)
    return keras.Model(inp, out)


def _run(tmp_path, *checkpoints: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps(["a", "b"]))
    for name in checkpoints:
        _model(0 if name == "best.keras" else 1).save(run / name)
    return run


@pytest.mark.parametrize(
    "present, chosen, predicted",
    [
        (("best.keras", "last.keras"), "best.keras", 0),
        (("last.keras",), "last.keras", 1),
        (("best.keras",), "best.keras", 0),
    ],
)
def test_every_loader_takes_the_run_directorys_choice(tmp_path, present, chosen, predicted):
    run = _run(tmp_path, *present)
    assert RunDir(run).checkpoint() == run / chosen
    x = np.zeros((1, 4), "float32")
    model, labels, _ = load_run(run)
    assert labels == ["a", "b"] and int(np.argmax(model(x))) == predicted
    dense_model, _ = load_run_model(run)
    assert int(np.argmax(dense_model(x))) == predicted


def test_no_checkpoint_is_a_clear_error(tmp_path):
    run = _run(tmp_path)
    assert RunDir(run).checkpoint() is None
    with pytest.raises(NotFoundError, match="no best.keras or last.keras"):
        load_run(run)
