"""The memory budget of training, as the CS231n notes teach it (``tlkit inspect NAME --memory``).

The notes name three sources ("Computational Considerations"): the activations, "kept around
because they are needed for backpropagation", and their gradients "(of equal size)"; the
parameters, their gradients and "a step cache if the optimization is using momentum" ("the
memory to store the parameter vector alone must usually be multiplied by a factor of at least
3 or so"); and "miscellaneous memory, such as the image data batches". Each is a number of
values, times 4 bytes at float32.

What :func:`memory_budget` counts:

* **weights**: every variable of the model (``count_params``: with BatchNorm's moving statistics);
* **gradients**: one value per trainable parameter (the whole model is trained);
* **optimizer state**: slots per trainable parameter: Adam 2 (first and second moments),
  SGD with momentum 1 (velocity), plain SGD 0;
* **activations**: every layer's output per image, as ``tlkit inspect`` counts them (the notes'
  VGG table), times the batch. Views (Flatten, Reshape, Dropout) allocate nothing and are not
  counted; the input image is counted in *input batch* instead. TensorFlow runs no layer in
  place: a Conv2D, its BatchNormalization and its ReLU each write a new tensor, so all three are
  counted. TensorFlow keeps only what the backward pass reads (a ReLU's output, a convolution's
  input) and frees the rest as soon as it is used;
* **activation gradients**: the notes' "~*2 for bwd": as many values again. TensorFlow frees each
  gradient once the layer below has used it.
* **input batch**: the images, batch x H x W x C.

The largest batch that fits a budget is ``(budget - weights - gradients - optimizer state) //
(bytes per image)`` where bytes per image = 2 x activations + the input image. Mixed precision
(Keras' ``mixed_float16``) stores activations and their gradients in 2 bytes and keeps the
variables, gradients and optimizer slots in float32: :attr:`MemoryBudget.mixed_total` shows that.

Measured (``benchmarks/bench_memory.py``, TensorFlow's CPU allocator peak of one training step,
oneDNN kernels; ``benchmarks/results/memory.json``): the estimate is 0.83x to 2.5x the peak. It
is low for a tiny net (cifar_example: 0.86x; a Keras Conv2D runs its convolution, the bias sum
and the ReLU as three ops, and kernels allocate temporaries) and high for deep networks with
BatchNorm (ResNet-18 1.3x, EfficientNet-Lite0 1.8x-2.5x: TensorFlow frees outputs and gradients
the backward pass no longer reads). With Eigen's kernels (``TF_ENABLE_ONEDNN_OPTS=0``) the tiny
net's peak is four times higher (0.23x).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from tlkit.errors import ConfigError

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
"""Values of optimizer state per trainable parameter."""

FLOAT32 = 4
FLOAT16 = 2

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20}
_UNITS |= {"GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """``"8GB"`` -> 8e9 bytes; ``"8GiB"`` -> 8 x 2**30. Units B, KB, MB, GB, TB (powers of 1000)
    and KiB, MiB, GiB, TiB (powers of 1024); a bare number is bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigError(f"expected a memory size such as 8GB, 512MB or 16GiB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def human_bytes(n: float) -> str:
    """Decimal units, as the notes' "93MB" (1 MB = 10**6 bytes)."""
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


@dataclass(frozen=True)
class MemoryBudget:
    """Values (not bytes) of each part of one training step; bytes come from the properties."""

    model: str
    input_shape: tuple[int, ...]
    batch: int
    optimizer: str
    weights: int  # every variable (BatchNorm moving statistics included)
    trainable: int  # parameters that get a gradient and optimizer slots
    activations_per_image: int  # layer outputs, input excluded
    input_per_image: int
    bytes_per_value: int = FLOAT32

    @property
    def slots(self) -> int:
        return OPTIMIZER_SLOTS[self.optimizer]

    @property
    def parameter_bytes(self) -> dict[str, int]:
        b = self.bytes_per_value
        return {
            "weights": b * self.weights,
            "gradients": b * self.trainable,
            "optimizer_state": b * self.slots * self.trainable,
        }

    @property
    def fixed_bytes(self) -> int:
        """What does not grow with the batch: weights, gradients, optimizer state."""
        return sum(self.parameter_bytes.values())

    def per_image_bytes(self, activation_bytes: int | None = None) -> int:
        """Activations, their gradients and the input image of one image."""
        a = self.bytes_per_value if activation_bytes is None else activation_bytes
        return 2 * a * self.activations_per_image + self.bytes_per_value * self.input_per_image

    @property
    def parts(self) -> dict[str, int]:
        b, n = self.bytes_per_value, self.batch
        return {
            **self.parameter_bytes,
            "activations": b * self.activations_per_image * n,
            "activation_gradients": b * self.activations_per_image * n,
            "input_batch": b * self.input_per_image * n,
        }

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def mixed_total(self) -> int:
        """The total under ``mixed_float16``: activations and their gradients in 2 bytes."""
        return self.fixed_bytes + self.batch * self.per_image_bytes(FLOAT16)

    @property
    def parameter_factor(self) -> float:
        """(weights + gradients + optimizer state) / weights: the notes' "factor of at least 3"."""
        return self.fixed_bytes / self.parameter_bytes["weights"]

    def largest_batch(self, budget: int, activation_bytes: int | None = None) -> int:
        """The largest batch whose total fits ``budget`` bytes (0: not even the parameters fit)."""
        room = budget - self.fixed_bytes
        return max(0, room // self.per_image_bytes(activation_bytes))

    def to_dict(self, budget: int | None = None) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d |= {
            "slots": self.slots,
            "bytes": self.parts,
            "total_bytes": self.total,
            "per_image_bytes": self.per_image_bytes(),
            "parameter_factor": self.parameter_factor,
            "mixed_float16_total_bytes": self.mixed_total,
        }
        if budget is not None:
            d |= {
                "budget_bytes": budget,
                "largest_batch": self.largest_batch(budget),
                "largest_batch_mixed_float16": self.largest_batch(budget, FLOAT16),
            }
        return d


def budget_from_table(table: dict[str, Any], batch: int, optimizer: str) -> MemoryBudget:
    """A :class:`MemoryBudget` from a :func:`tlkit.inspection.layer_table`."""
    if optimizer not in OPTIMIZER_SLOTS:
        raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZER_SLOTS)}, got {optimizer!r}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    shape = table["input_shape"]
    if shape and isinstance(shape[0], list):
        raise ConfigError(f"{table['model']} has several inputs; --memory handles one-input models")
    inputs = [r for r in table["rows"] if r["type"] == "InputLayer"]
    input_values = sum(r["activations"] for r in inputs)
    t = table["totals"]
    return MemoryBudget(
        model=table["model"],
        input_shape=tuple(int(v) for v in shape),
        batch=batch,
        optimizer=optimizer,
        weights=int(t["params_keras"]),
        trainable=int(t["params"]),
        activations_per_image=int(t["activations"]) - input_values,
        input_per_image=math.prod(int(v) for v in shape),
    )


def memory_budget(
    name: str, batch: int, optimizer: str = "adam", input_size: tuple[int, int] | None = None
) -> MemoryBudget:
    """Build ``name`` (random weights) and count its training memory; see the module docstring."""
    from tlkit.cli.commands.inspect import inspect_model

    return budget_from_table(inspect_model(name, input_size), batch, optimizer)


def format_budget(b: MemoryBudget, budget: int | None = None) -> str:
    """The budget as the CLI prints it."""
    shape = "x".join(str(v) for v in b.input_shape)
    slots = {0: "no state", 1: "1 slot: velocity", 2: "2 slots: first and second moments"}[b.slots]
    rows = [
        ("weights", b.weights, "every variable, BatchNorm moving statistics included"),
        ("gradients", b.trainable, "one per trainable parameter"),
        ("optimizer state", b.slots * b.trainable, f"{b.optimizer}: {slots}"),
        (
            "activations",
            b.activations_per_image * b.batch,
            f"{b.activations_per_image:,} per image (every layer's output) x {b.batch}",
        ),
        ("activation gradients", b.activations_per_image * b.batch, "as many again (the notes' x2 for backward)"),
        ("input batch", b.input_per_image * b.batch, f"{b.batch} x {shape}"),
    ]
    width = len(f"{b.total // b.bytes_per_value:,}")
    out = [f"training memory of {b.model} at {shape}, batch {b.batch}, {b.optimizer}, float32 (4 bytes a value):"]
    for label, values, why in rows:
        out.append(f"  {label:<21} {values:>{width},} values  {human_bytes(4 * values):>9}  {why}")
    out.append(f"  {'total':<21} {b.total // b.bytes_per_value:>{width},} values  {human_bytes(b.total):>9}")
    out.append(
        f"parameters x {b.parameter_factor:g} with gradients and {b.optimizer} state; "
        f"{human_bytes(b.per_image_bytes())} per image of the batch"
    )
    if budget is not None:
        fits = b.largest_batch(budget)
        if fits:
            out.append(f"largest batch that fits {human_bytes(budget)}: {fits:,}")
        else:
            out.append(
                f"largest batch that fits {human_bytes(budget)}: none; weights, gradients and optimizer "
                f"state alone take {human_bytes(b.fixed_bytes)}"
            )
    mixed = (
        f"mixed_float16 (activations in 2 bytes, variables and slots in float32): total {human_bytes(b.mixed_total)}"
    )
    if budget is not None:
        mixed += f", largest batch {b.largest_batch(budget, FLOAT16):,}"
    out.append(mixed)
    out.append(
        "note: the notes' rule, not a measurement: TensorFlow frees outputs and gradients the backward pass "
        "no longer needs (the rule overstates deep networks) but allocates temporaries it does not count; "
        "TensorFlow's measured peak on CPU: benchmarks/bench_memory.py"
    )
    return "\n".join(out)
