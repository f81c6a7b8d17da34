"""keras.applications bases: specs, layer aliases and the exact ImageNet files Keras fetches.

The file names, folders and checksums are copied from keras/src/applications/*.py (Keras 3);
tests/test_weights.py checks them against the installed Keras source, so a Keras upgrade
that changes a file is noticed. Keras' own architectures (e.g. its ResNet50 has conv
biases, unlike the paper's form) carry the plain names; tlkit's builders of the same
architecture carry the suffix ``_tlkit``.
"""

from __future__ import annotations

from tlkit.models._spec_common import DENSENET_TAPS, GAP, STAGE_BLOCKS, resnet_taps, stride_taps
from tlkit.registry import ModelSpec, WeightsEntry, register

_APP = "tlkit.models.applications:build_application"
_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"
_LICENCE = "Keras applications weights (see the Keras applications documentation for each model)"
# Trainable parameters of the keras.applications model as built, matching the "Parameters"
# column of the Keras applications table minus BatchNorm statistics.
_KERAS_COUNT = "keras.applications model as built (Keras' architecture; trainable weights)"
# Keras' own minimum input sizes (valid-padded stems); the rest take 32x32.
_MIN_INPUT = {"inception_v3": 75, "xception": 71}
# Unfreezing blocks by Keras' layer names: conv3_block2_ (ResNet, DenseNet), block2a_
# (EfficientNet), block_5_ / expanded_conv_ (MobileNetV2), block4_ (VGG, Xception), mixed5
# closes an Inception module (the conv2d_N before it join it).
_BLOCKS = {
    "densenet121": STAGE_BLOCKS,
    "efficientnet_b0": r"^(block\d+[a-z])_",
    "mobilenet_v2": r"^(block_\d+)_|^(expanded_conv)_",
    "vgg16": r"^(block\d+)_",
    "vgg19": r"^(block\d+)_",
    "xception": r"^(block\d+)_",
    "inception_v3": r"^(mixed\d+)$",
}
_VGG_LAYERS = {
    "pool3": "block3_pool",
    "pool4": "block4_pool",
    **stride_taps(*(f"block{k}_pool" for k in range(1, 6))),
    "pool5": "block5_pool",
    "fc6": "fc1",
    "fc7": "fc2",
    "fc8": "predictions",
    "penultimate": "fc2",
    "classifier": "predictions",
}


def _keras_file(
    folder: str, stem: str, top: str | None, notop: str | None, *, suffix: str = "", sizes: tuple[int, ...] = ()
) -> WeightsEntry:
    """A keras.applications ImageNet entry: ``<stem>.h5`` and ``<stem>_notop.h5`` in ``folder``."""
    notop_suffix = "_no_top" if sizes else "_notop"
    return WeightsEntry(
        kind="keras_file",
        file=f"{stem}{suffix}.h5",
        notop_file=f"{stem}{suffix}{notop_suffix}.h5",
        url=folder,
        file_hash=top,
        notop_hash=notop,
        sizes=sizes,
        licence=_LICENCE,
    )


def _resnet(stem: str, top: str, notop: str) -> WeightsEntry:
    return _keras_file(_KA + "resnet/", f"{stem}_weights_tf_dim_ordering_tf_kernels", top, notop)


for _name, _app, _size, _pre, _layers, _p, _src, _entry in [
    (
        "resnet50",
        "ResNet50",
        224,
        "caffe",
        {"top": "conv5_block3_out", **GAP, **resnet_taps(50, 1)},
        25_583_592,
        _KERAS_COUNT,
        _resnet("resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    ),
    (
        "resnet101",
        "ResNet101",
        224,
        "caffe",
        {"top": "conv5_block3_out", **GAP, **resnet_taps(101, 1)},
        44_601_832,
        _KERAS_COUNT,
        _resnet("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    ),
    (
        "resnet152",
        "ResNet152",
        224,
        "caffe",
        {"top": "conv5_block3_out", **GAP, **resnet_taps(152, 1)},
        60_268_520,
        _KERAS_COUNT,
        _resnet("resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    ),
    (
        "resnet50v2",
        "ResNet50V2",
        224,
        "tf",
        {"top": "post_relu", **GAP, **resnet_taps(50, 2, keras_v2=True)},
        25_568_360,
        _KERAS_COUNT,
        _resnet("resnet50v2", "3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    ),
    (
        "resnet101v2",
        "ResNet101V2",
        224,
        "tf",
        {"top": "post_relu", **GAP, **resnet_taps(101, 2, keras_v2=True)},
        44_577_896,
        _KERAS_COUNT,
        _resnet("resnet101v2", "6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    ),
    (
        "resnet152v2",
        "ResNet152V2",
        224,
        "tf",
        {"top": "post_relu", **GAP, **resnet_taps(152, 2, keras_v2=True)},
        60_236_904,
        _KERAS_COUNT,
        _resnet("resnet152v2", "a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
    ),
    (
        "vgg16",
        "VGG16",
        224,
        "caffe",
        _VGG_LAYERS,
        138_357_544,
        "VGG paper Table 2 (config D)",
        _keras_file(
            _KA + "vgg16/",
            "vgg16_weights_tf_dim_ordering_tf_kernels",
            "64373286793e3c8b2b4e3219cbf3544b",
            "6d6bbae143d832006294945121d1f1fc",
        ),
    ),
    (
        "vgg19",
        "VGG19",
        224,
        "caffe",
        _VGG_LAYERS,
        143_667_240,
        "VGG paper Table 2 (config E)",
        _keras_file(
            _KA + "vgg19/",
            "vgg19_weights_tf_dim_ordering_tf_kernels",
            "cbe5617147190e668d6c5d5026f83318",
            "253f8cb515780f3b799900260a226db6",
        ),
    ),
    (
        "inception_v3",
        "InceptionV3",
        299,
        "tf",
        {"top": "mixed10", **GAP},
        23_817_352,
        _KERAS_COUNT,
        _keras_file(
            _KA + "inception_v3/",
            "inception_v3_weights_tf_dim_ordering_tf_kernels",
            "9a0d58056eeedaa3f26cb7ebd46da564",
            "bcbd6486424b2319ff4ef7d526e38f63",
        ),
    ),
    (
        "xception",
        "Xception",
        299,
        "tf",
        {"top": "block14_sepconv2_act", **GAP},
        22_855_952,
        _KERAS_COUNT,
        _keras_file(
            _KA + "xception/",
            "xception_weights_tf_dim_ordering_tf_kernels",
            "0a58e3b7378bc2990ea3b43d5981f1f6",
            "b0042744bf5b25fce3cb969f33bebb97",
        ),
    ),
    # MobileNetV2: Keras publishes no checksum, and picks the file by input size (other sizes: 224).
    (
        "mobilenet_v2",
        "MobileNetV2",
        224,
        "tf",
        {
            "top": "out_relu",
            **stride_taps(*(f"block_{k}_expand_relu" for k in (1, 3, 6, 13)), "out_relu"),
            "avg_pool": "type:GlobalAveragePooling2D",
            "penultimate": "type:GlobalAveragePooling2D",
            "classifier": "predictions",
        },
        3_504_872,
        _KERAS_COUNT,
        _keras_file(
            _KA + "mobilenet_v2/",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels",
            None,
            None,
            suffix="_1.0_{rows}",
            sizes=(96, 128, 160, 192, 224),
        ),
    ),
    # EfficientNet lives in another bucket and names files after the model.
    (
        "efficientnet_b0",
        "EfficientNetB0",
        224,
        "none",
        {
            "top": "top_activation",
            **GAP,
            **stride_taps(*(f"block{k}a_expand_activation" for k in (2, 3, 4, 6)), "top_activation"),
        },
        5_288_548,
        _KERAS_COUNT,
        _keras_file(
            "https://storage.googleapis.com/keras-applications/",
            "efficientnetb0",
            "902e53a9f72be733fc0bcb005b3ebbac",
            "50bc09e76180e00e4465e1a485ddc09d",
        ),
    ),
    (
        "densenet121",
        "DenseNet121",
        224,
        "torch",
        {"top": "relu", **GAP, **DENSENET_TAPS},
        7_978_856,
        "Huang et al. 2017; torchvision densenet121 count",
        _keras_file(
            _KA + "densenet/",
            "densenet121_weights_tf_dim_ordering_tf_kernels",
            "9d60b8095a5708f2dcce2bca79d332c7",
            "30ee3e1110167f948a6b9946edeeb738",
        ),
    ),
]:
    register(
        ModelSpec(
            name=_name,
            family="keras_applications",
            builder=_APP,
            input_shape=(_size, _size, 3),
            preprocessing=_pre,
            layers=_layers,
            weights=(_entry,),
            params=_p,
            params_source=_src,
            fixed_input=_name.startswith("vgg"),
            min_input=_MIN_INPUT.get(_name, 32),
            builder_kwargs={"application": _app},
            blocks=_BLOCKS.get(_name, STAGE_BLOCKS),
            description=f"keras.applications.{_app}",
        )
    )
