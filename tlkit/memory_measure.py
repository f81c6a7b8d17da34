"""TensorFlow's measured peak memory of one training step on CPU, to check :mod:`tlkit.memory_budget`.

Method: a child process with ``TF_CPU_ALLOCATOR_USE_BFC=true``, which makes TensorFlow's CPU
allocator a BFC allocator that keeps statistics, so ``tf.config.experimental.get_memory_info("CPU:0")``
reports bytes in use and their peak (without that variable it reports zeros). The child builds
the model as ``tlkit inspect`` does (random weights), compiles it with the optimizer, a mean
squared error loss and ``jit_compile=False`` (tlkit's training enables op determinism, which turns
Keras' XLA off), runs one ``train_on_batch`` (traces the step, creates the optimizer slots), resets
the peak and runs a second step on the same batch. The peak of that step is the figure: it holds
the weights, optimizer slots, the input batch and targets, and every tensor the step allocates.

Limits: the peak depends on the kernels: with ``TF_ENABLE_ONEDNN_OPTS=0`` (Eigen) the
convolution gradients' temporaries are several times larger (see :func:`measure_peak`). Only
tensors allocated through TensorFlow's CPU allocator count. Not counted: the
Python heap, Keras objects, the TensorFlow runtime and graph, whatever a kernel library allocates
outside TensorFlow's allocator (oneDNN's cache of compiled primitives, for one), and the decode
pipeline (``tf.data``) of a real run. So the
figure is a lower bound on what a training process needs, and it is specific to one TensorFlow
version and the CPU kernels (a GPU's cuDNN workspaces differ).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

OPTIMIZERS = ("adam", "momentum", "sgd")


def measure_peak(
    name: str,
    batch: int,
    optimizer: str = "adam",
    input_size: tuple[int, int] | None = None,
    *,
    onednn: bool = True,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run the measurement in a fresh process; returns the estimate and the measured bytes.

    ``onednn`` sets ``TF_ENABLE_ONEDNN_OPTS`` in the child: oneDNN's kernels (TensorFlow's default
    on x86) or Eigen's (what the test suite runs for bit-stable numerics), whose convolution
    gradients allocate far larger temporaries through TensorFlow's allocator (cifar_example at
    batch 64: a 40 MB peak against 11 MB with oneDNN).

    Keys: ``estimate`` (:meth:`MemoryBudget.to_dict`), ``peak_bytes`` (the second step's peak),
    ``resident_bytes`` (in use before it: weights, slots, batch), ``ratio`` (estimate / peak), ``onednn``."""
    cmd = [sys.executable, "-m", "tlkit.memory_measure", name, str(batch), optimizer]
    if input_size:
        cmd += [str(input_size[0]), str(input_size[1])]
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["ratio"] = result["estimate"]["total_bytes"] / result["peak_bytes"]
    result["onednn"] = onednn
    return result


def _build(name: str, input_size: tuple[int, int] | None) -> tuple[Any, str]:
    """The model ``tlkit inspect`` builds for ``name``."""
    import tlkit
    from tlkit.registry import get_spec

    spec = get_spec(name)
    include_top = not (input_size and spec.fixed_input and tuple(input_size) != spec.input_shape[:2])
    model = tlkit.build(spec.name, input_shape=tuple(input_size) if input_size else None, include_top=include_top)
    return model, spec.name


def _child(name: str, batch: int, optimizer: str, input_size: tuple[int, int] | None) -> dict[str, Any]:
    from tlkit._quiet_tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from tlkit.inspection import layer_table
    from tlkit.memory_budget import budget_from_table

    model, key = _build(name, input_size)
    estimate = budget_from_table(layer_table(model, name=key), batch, optimizer)
    opt = {
        "adam": lambda: keras.optimizers.Adam(1e-4),
        "momentum": lambda: keras.optimizers.SGD(1e-3, momentum=0.9),
        "sgd": lambda: keras.optimizers.SGD(1e-3),
    }[optimizer]()
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    x = tf.random.uniform((batch, *model.input_shape[1:]), 0, 255)
    y = tf.zeros((batch, *model.output_shape[1:]))
    model.train_on_batch(x, y)
    resident = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    model.train_on_batch(x, y)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    if peak == 0:
        raise RuntimeError("TensorFlow reported no CPU memory: is TF_CPU_ALLOCATOR_USE_BFC=true set?")
    return {
        "model": key,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "estimate": estimate.to_dict(),
        "resident_bytes": int(resident),
        "peak_bytes": int(peak),
    }


if __name__ == "__main__":
    a = sys.argv[1:]
    size = (int(a[3]), int(a[4])) if len(a) == 5 else None
    print(json.dumps(_child(a[0], int(a[1]), a[2], size)))
