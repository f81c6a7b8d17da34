"""Every registered architecture, as data (no Keras import).

Parameter counts follow the papers and torchvision: trainable weights and biases
including BatchNorm scale/offset, excluding BatchNorm moving statistics. Each
number names its source. Where keras.applications has an architecture with
ImageNet weights, the plain name (``resnet50``, ``vgg16``) is the
keras.applications model, so ``--base resnet50`` can load weights; tlkit's own
builder of the same architecture carries the suffix ``_tlkit``.
"""

from __future__ import annotations

from tlkit.registry import ModelSpec, register

# For architectures with no exact published count: the builder's count, kept as a regression guard.
_COMPUTED = "computed from the builder; no exact published count"

_CLASSIC = {"pool5": "pool5", "fc6": "fc6", "fc7": "fc7", "fc8": "fc8",
            "penultimate": "fc7", "classifier": "fc8"}
_GAP = {"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"}

# --- LeNet and the CS231n CIFAR-10 example ---------------------------------
register(ModelSpec(
    name="lenet5", family="lenet", builder="tlkit.models.lenet:lenet5",
    input_shape=(32, 32, 1), preprocessing="unit", num_classes=10, fixed_input=True,
    layers={"pool2": "pool2", "fc6": "fc6", "fc7": "fc7", "penultimate": "fc7", "classifier": "fc8"},
    params=61_706,
    params_source="computed from LeCun et al. 1998 with full C3 connectivity: "
                  "C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850",
    description="LeNet-5: CONV-POOL-CONV-POOL-FC-FC-FC on 32x32 grayscale"))
register(ModelSpec(
    name="cifar_example", family="lenet", builder="tlkit.models.lenet:cifar_example",
    input_shape=(32, 32, 3), preprocessing="unit", num_classes=10, fixed_input=True,
    layers={"pool1": "pool1", "penultimate": "pool1", "classifier": "fc"},
    params=31_066,
    params_source="computed: CONV 3x3x3x12+12 = 336, FC 16*16*12*10+10 = 30,730",
    description="CS231n example INPUT[32x32x3]-CONV(12)-RELU-POOL-FC(10)"))

# --- AlexNet / ZFNet ---------------------------------------------------------
register(ModelSpec(
    name="alexnet", family="alexnet", builder="tlkit.models.alexnet:alexnet",
    input_shape=(227, 227, 3), preprocessing="caffe", fixed_input=True, layers=_CLASSIC,
    params=62_378_344, params_source="Krizhevsky et al. 2012, single-tower form with the paper's "
    "96/256/384/384/256 filters and 227x227 input (torchvision's 64/192/384/256/256 variant has 61,100,840)",
    min_input=67,
    description="AlexNet, single tower, LRN after pool1 and pool2"))
register(ModelSpec(
    name="alexnet_grouped", family="alexnet", builder="tlkit.models.alexnet:alexnet",
    input_shape=(227, 227, 3), preprocessing="caffe", fixed_input=True, layers=_CLASSIC,
    builder_kwargs={"two_tower": True},
    params=60_965_224, params_source="Krizhevsky et al. 2012 two-tower form: conv2/4/5 grouped (groups=2)",
    min_input=67, description="AlexNet with the original two-GPU grouped connectivity"))
register(ModelSpec(
    name="zfnet", family="alexnet", builder="tlkit.models.alexnet:zfnet",
    input_shape=(224, 224, 3), preprocessing="caffe", fixed_input=True, layers=_CLASSIC,
    params=107_627_624, params_source=_COMPUTED + " (ZFNet with CS231n's 512/1024/512 middle layers)",
    min_input=53, description="ZFNet: CONV1 7x7/2, CONV3/4/5 with 512/1024/512 filters"))

# --- VGG (Simonyan & Zisserman 2015, Table 1; Table 2 rounds to millions, exact counts as torchvision) --
for _name, _cfg, _params, _aliases in [
    ("vgg11", "A", 132_863_336, ("vgg_a",)),
    ("vgg11_lrn", "A-LRN", 132_863_336, ("vgg_a_lrn",)),
    ("vgg13", "B", 133_047_848, ("vgg_b",)),
    ("vgg16c", "C", 133_638_952, ("vgg_c",)),
    ("vgg16_tlkit", "D", 138_357_544, ("vgg_d",)),
    ("vgg19_tlkit", "E", 143_667_240, ("vgg_e",)),
]:
    register(ModelSpec(
        name=_name, family="vgg", builder="tlkit.models.vgg:vgg",
        input_shape=(224, 224, 3), preprocessing="caffe", fixed_input=True, layers=_CLASSIC,
        builder_kwargs={"config": _cfg}, params=_params,
        params_source=f"VGG paper Table 2 (config {_cfg}, in millions); exact count as torchvision",
        description=f"VGG configuration {_cfg}"), aliases=_aliases)

# --- GoogLeNet ---------------------------------------------------------------
register(ModelSpec(
    name="googlenet", family="googlenet", builder="tlkit.models.googlenet:googlenet",
    input_shape=(224, 224, 3), preprocessing="tf",
    layers={"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"},
    params=6_998_552, params_source=_COMPUTED + "; the paper's Table 1 sums to about 6.8M (rounded per layer)",
    description="GoogLeNet / Inception v1 (Szegedy et al. 2015); aux classifiers optional"))
register(ModelSpec(
    name="googlenet_aux", family="googlenet", builder="tlkit.models.googlenet:googlenet",
    input_shape=(224, 224, 3), preprocessing="tf", builder_kwargs={"aux_classifiers": True},
    layers={"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"},
    fixed_input=True, params=13_378_280, params_source=_COMPUTED + " (main 6,998,552 + two aux heads)",
    description="GoogLeNet with its two auxiliary classifiers (outputs: main, aux1, aux2)"))

# --- ResNet family (tlkit's builders, the papers' form as torchvision builds it: no conv biases,
# stride on the 3x3 conv of a bottleneck ("v1.5"; the same parameter count as the paper's v1)) ---
_RESNET_TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# v2 (pre-activation) counts: computed from the builder and by independent arithmetic in the tests.
_RESNET_V2 = {18: 11_687_720, 34: 21_795_880, 50: 25_549_352, 101: 44_541_480, 152: 60_185_128}
for _depth, _p in _RESNET_TORCHVISION.items():
    _n = f"resnet{_depth}" if _depth in (18, 34) else f"resnet{_depth}_tlkit"
    _top = "conv5_block2_out" if _depth == 18 else "conv5_block3_out"
    register(ModelSpec(
        name=_n, family="resnet", builder="tlkit.models.resnet:resnet",
        input_shape=(224, 224, 3), preprocessing="torch", layers={"top": _top, **_GAP},
        builder_kwargs={"depth": _depth, "version": 1}, params=_p,
        params_source=f"He et al. 2016; torchvision resnet{_depth} count",
        description=f"ResNet-{_depth} v1 (paper form, no conv biases; v1.5 stride placement)"))
    _n2 = f"resnet{_depth}v2" if _depth in (18, 34) else f"resnet{_depth}v2_tlkit"
    register(ModelSpec(
        name=_n2, family="resnet", builder="tlkit.models.resnet:resnet",
        input_shape=(224, 224, 3), preprocessing="torch", layers={"top": "post_relu", **_GAP},
        builder_kwargs={"depth": _depth, "version": 2}, params=_RESNET_V2[_depth],
        params_source=_COMPUTED + " (pre-activation: no stem BN, BN before each block, post_bn)",
        description=f"ResNet-{_depth} v2, pre-activation (He et al. 2016, identity mappings)"))
for _name, _kw, _p, _src in [
    ("wide_resnet50_2", {"depth": 50, "width_factor": 2}, 68_883_240, "torchvision wide_resnet50_2"),
    ("wide_resnet101_2", {"depth": 101, "width_factor": 2}, 126_886_696, "torchvision wide_resnet101_2"),
    ("resnext50_32x4d", {"depth": 50, "groups": 32, "width_per_group": 4}, 25_028_904,
     "torchvision resnext50_32x4d"),
    ("resnext101_32x8d", {"depth": 101, "groups": 32, "width_per_group": 8}, 88_791_336,
     "torchvision resnext101_32x8d"),
]:
    register(ModelSpec(
        name=_name, family="resnet", builder="tlkit.models.resnet:resnet",
        input_shape=(224, 224, 3), preprocessing="torch", layers={"top": "conv5_block3_out", **_GAP},
        builder_kwargs={"version": 1, **_kw}, params=_p, params_source=_src,
        description=_name.replace("_", " ")))

# --- DenseNet ------------------------------------------------------------------
register(ModelSpec(
    name="densenet121_tlkit", family="densenet", builder="tlkit.models.densenet:densenet",
    input_shape=(224, 224, 3), preprocessing="torch", layers={"top": "relu", **_GAP},
    builder_kwargs={"blocks": (6, 12, 24, 16), "growth_rate": 32}, params=7_978_856,
    params_source="Huang et al. 2017; torchvision densenet121 count",
    description="DenseNet-121 (BC, growth 32)"))

# --- All-CNN and Network-in-Network (CIFAR-10 sized) --------------------------
for _name, _variant, _p, _src in [
    ("allcnn_c", "all", 1_369_738, "computed from Springenberg et al. 2015, Table 2 (model C)"),
    ("allcnn_strided", "strided", 954_730, _COMPUTED + " (Strided-CNN-C)"),
    ("allcnn_convpool", "convpool", 1_369_738, _COMPUTED + " (ConvPool-CNN-C)"),
]:
    register(ModelSpec(
        name=_name, family="allcnn", builder="tlkit.models.allcnn:allcnn",
        input_shape=(32, 32, 3), preprocessing="unit", num_classes=10,
        layers={"penultimate": "conv8", "classifier": "conv9"},
        builder_kwargs={"variant": _variant}, params=_p, params_source=_src,
        description=f"All-CNN-C family ({_variant}), Springenberg et al. 2015"))
register(ModelSpec(
    name="nin", family="allcnn", builder="tlkit.models.allcnn:nin",
    input_shape=(32, 32, 3), preprocessing="unit", num_classes=10,
    layers={"penultimate": "cccp5", "classifier": "cccp6"},
    params=966_986, params_source="computed from Lin et al. 2014 CIFAR-10 model (192/160/96, 192x3, 192/192/10)",
    description="Network in Network (CIFAR-10)"))

# --- EfficientNet-Lite0: the embedded default with offline ImageNet weights ---
register(ModelSpec(
    name="efficientnet_lite0", family="efficientnet_lite",
    builder="tlkit.models.efficientnet_lite:efficientnet_lite0",
    input_shape=(224, 224, 3), preprocessing="lite", weights=("imagenet",),
    layers={"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions",
            "top": "top_activation"},
    params=4_652_008, params_source="state dict of efficientnet-lite0-57934424.pth (timm count)",
    description="EfficientNet-Lite0; real ImageNet weights ship with the package (offline)"))

# --- keras.applications bases --------------------------------------------------
_APP = "tlkit.models.applications:build_application"
# Keras' own architectures (e.g. its ResNet50 has conv biases, unlike the paper's form):
# trainable parameters of the keras.applications model as built, matching the
# "Parameters" column of the Keras applications table minus BatchNorm statistics.
_KERAS_COUNT = "keras.applications model as built (Keras' architecture; trainable weights)"
for _name, _app, _size, _pre, _layers, _p, _src in [
    ("resnet50", "ResNet50", 224, "caffe", {"top": "conv5_block3_out", **_GAP}, 25_583_592, _KERAS_COUNT),
    ("resnet101", "ResNet101", 224, "caffe", {"top": "conv5_block3_out", **_GAP}, 44_601_832, _KERAS_COUNT),
    ("resnet152", "ResNet152", 224, "caffe", {"top": "conv5_block3_out", **_GAP}, 60_268_520, _KERAS_COUNT),
    ("resnet50v2", "ResNet50V2", 224, "tf", {"top": "post_relu", **_GAP}, 25_568_360, _KERAS_COUNT),
    ("resnet101v2", "ResNet101V2", 224, "tf", {"top": "post_relu", **_GAP}, 44_577_896, _KERAS_COUNT),
    ("resnet152v2", "ResNet152V2", 224, "tf", {"top": "post_relu", **_GAP}, 60_236_904, _KERAS_COUNT),
    ("vgg16", "VGG16", 224, "caffe", {"pool5": "block5_pool", "fc6": "fc1", "fc7": "fc2",
                                      "fc8": "predictions", "penultimate": "fc2",
                                      "classifier": "predictions"},
     138_357_544, "VGG paper Table 2 (config D)"),
    ("vgg19", "VGG19", 224, "caffe", {"pool5": "block5_pool", "fc6": "fc1", "fc7": "fc2",
                                      "fc8": "predictions", "penultimate": "fc2",
                                      "classifier": "predictions"},
     143_667_240, "VGG paper Table 2 (config E)"),
    ("inception_v3", "InceptionV3", 299, "tf", {"top": "mixed10", **_GAP}, 23_817_352, _KERAS_COUNT),
    ("xception", "Xception", 299, "tf", {"top": "block14_sepconv2_act", **_GAP}, 22_855_952, _KERAS_COUNT),
    ("mobilenet_v2", "MobileNetV2", 224, "tf",
     {"top": "out_relu", "avg_pool": "type:GlobalAveragePooling2D",
      "penultimate": "type:GlobalAveragePooling2D", "classifier": "predictions"}, 3_504_872, _KERAS_COUNT),
    ("efficientnet_b0", "EfficientNetB0", 224, "none", {"top": "top_activation", **_GAP}, 5_288_548, _KERAS_COUNT),
    ("densenet121", "DenseNet121", 224, "torch", {"top": "relu", **_GAP}, 7_978_856,
     "Huang et al. 2017; torchvision densenet121 count"),
]:
    register(ModelSpec(
        name=_name, family="keras_applications", builder=_APP,
        input_shape=(_size, _size, 3), preprocessing=_pre, layers=_layers,
        weights=("imagenet",), params=_p, params_source=_src,
        fixed_input=_name.startswith("vgg"),
        builder_kwargs={"application": _app},
        description=f"keras.applications.{_app}"))
