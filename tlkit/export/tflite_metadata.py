"""Image-classifier metadata inside each exported ``.tflite``: labels, input normalisation, colour space.

With it, MediaPipe Tasks' ``ImageClassifier`` (and any TFLite metadata reader) runs the file as it is:
the category names come from the embedded labels, and the input is described as an RGB image whose
pixels go in as 0..255 (normalisation mean 0, std 1: the graph normalises itself, for float32 and
uint8 inputs alike). The writer is MediaPipe's own (``metadata_writers.metadata_writer``), from the
``deploy`` extra; without it the export writes the models without metadata and says so.

A ``.tflite`` with metadata is also a zip archive holding the associated files (here ``labels.txt``):
:func:`embedded_labels` reads them back without MediaPipe.
"""

from __future__ import annotations

import importlib
import io
import sys
import types
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEPLOY_HINT = 'pip install "tlkit[deploy]"'
METADATA_LABELS_FILE = "labels.txt"  # the writer's name for the first label list
INPUT_NORM_MEAN = [0.0]  # the graph takes RGB 0..255 and normalises inside: MediaPipe feeds pixels as they are
INPUT_NORM_STD = [1.0]

# mediapipe >= 0.10.3x wheels ship tasks/python/metadata/metadata.py, which imports the compiled
# mediapipe.tasks.cc.metadata.python._pywrap_metadata_version, but no longer ship that module
# (checked: mediapipe 0.10.35, 1.2.2, 1.2.3): the writer fails to import with
# "No module named 'mediapipe.tasks.cc'". Its one function is ported below and registered under
# that name only when the real module is absent.
_PYWRAP_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


class MetadataUnavailable(RuntimeError):
    """MediaPipe's metadata writer cannot be imported (the ``deploy`` extra is not installed)."""


def min_parser_version(metadata_buf: bytes) -> str:
    """The oldest metadata parser version that understands every field set in ``metadata_buf``.

    A Python port of MediaPipe's ``GetMinimumMetadataParserVersion``
    (mediapipe/tasks/cc/metadata/metadata_version.cc): 1.0.0, raised by each schema member
    added later (vocabulary files 1.0.1, subgraph process units and tokenizer options 1.1.0,
    tensor groups 1.2.0, regex tokenizer 1.2.1, audio properties 1.3.0, ScaNN index files 1.4.0,
    associated-file versions 1.4.1, custom metadata 1.5.0).
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    buf = bytes(metadata_buf)
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise ValueError("the model metadata is not a valid FlatBuffer buffer")
    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(buf, 0))
    found = [(1, 0, 0)]

    def files(items: list | None) -> None:
        for f in items or ():
            if f.type == fb.AssociatedFileType.VOCABULARY:
                found.append((1, 0, 1))
            if f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                found.append((1, 4, 0))
            if f.version is not None:
                found.append((1, 4, 1))

    def units(items: list | None) -> None:
        options = fb.ProcessUnitOptions
        for u in items or ():
            if u.optionsType in (options.BertTokenizerOptions, options.SentencePieceTokenizerOptions):
                found.append((1, 1, 0))
            if u.optionsType == options.RegexTokenizerOptions:
                found.append((1, 2, 1))

    for sub in md.subgraphMetadata or ():
        for tensor in (sub.inputTensorMetadata or []) + (sub.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content is not None and tensor.content.contentPropertiesType == (
                fb.ContentProperties.AudioProperties
            ):
                found.append((1, 3, 0))
        files(sub.associatedFiles)
        # A field present but empty still counts, as in the C++ (a non-null vector).
        for field, version in (
            ("inputProcessUnits", (1, 1, 0)),
            ("outputProcessUnits", (1, 1, 0)),
            ("inputTensorGroups", (1, 2, 0)),
            ("outputTensorGroups", (1, 2, 0)),
            ("customMetadata", (1, 5, 0)),
        ):
            if getattr(sub, field) is not None:
                found.append(version)
        units(sub.inputProcessUnits)
        units(sub.outputProcessUnits)
    files(md.associatedFiles)
    return ".".join(map(str, max(found)))


def _install_parser_version_shim() -> None:
    """Register :func:`min_parser_version` as MediaPipe's missing compiled module, only if it is missing."""
    try:
        importlib.import_module(_PYWRAP_VERSION_MODULE)
        return
    except ImportError:
        pass
    shim = types.ModuleType(_PYWRAP_VERSION_MODULE, "tlkit's port of GetMinimumMetadataParserVersion")
    shim.GetMinimumMetadataParserVersion = min_parser_version  # type: ignore[attr-defined]
    parent_name = _PYWRAP_VERSION_MODULE.rpartition(".")[0]
    parent = sys.modules.setdefault(parent_name, types.ModuleType(parent_name))
    parent._pywrap_metadata_version = shim  # type: ignore[attr-defined]
    sys.modules[_PYWRAP_VERSION_MODULE] = shim


def metadata_writer() -> Any:
    """MediaPipe's ``metadata_writers.metadata_writer`` module; :class:`MetadataUnavailable` without it."""
    try:
        import mediapipe  # noqa: F401
    except ImportError as exc:
        raise MetadataUnavailable(f"mediapipe is not installed ({exc}); {DEPLOY_HINT}") from None
    _install_parser_version_shim()
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer as writer
    except ImportError as exc:
        raise MetadataUnavailable(f"MediaPipe's metadata writer cannot be imported ({exc}); {DEPLOY_HINT}") from None
    return writer


def metadata_skip_reason() -> str | None:
    """None when metadata can be written; else one line saying why not and what to install."""
    try:
        metadata_writer()
    except MetadataUnavailable as exc:
        return str(exc)
    return None


def add_metadata(model_bytes: bytes, labels: Sequence[str], *, name: str, description: str) -> bytes:
    """``model_bytes`` with image-classifier metadata and ``labels.txt`` embedded.

    The model must have one image input (float32 or uint8 [B, H, W, 3], RGB 0..255) and one
    output of per-class scores in the order of ``labels``. Raises :class:`MetadataUnavailable`
    without MediaPipe and ``ValueError`` for a model that does not have that layout.
    """
    writer = metadata_writer()
    labels = [str(label) for label in labels]
    if any("\n" in label or "\r" in label for label in labels):
        raise ValueError("a label contains a line break; labels.txt holds one label a line")
    w = writer.MetadataWriter.create(bytearray(model_bytes))
    w.add_general_info(name, description)
    w.add_image_input(INPUT_NORM_MEAN, INPUT_NORM_STD, color_space_type=writer.MetadataWriter.color_space_types.RGB)
    w.add_classification_output(writer.Labels().add(labels))
    try:
        out, _ = w.populate()
        problem = None
    except ValueError as exc:
        problem = str(exc)
    # Raised outside the except block, so no traceback keeps the writer alive: its __del__ at
    # interpreter exit fails noisily ("'NoneType' object has no attribute 'path'").
    del w
    if problem:
        raise ValueError(f"cannot embed image-classifier metadata in this TFLite model: {problem}")
    return bytes(out)


def metadata_for(labels: Sequence[str], size: tuple[int, int]) -> tuple[Callable[[bytes], bytes], dict[str, Any]]:
    """What the export applies to each converted model, and the model card's ``tflite.metadata``.

    With MediaPipe: a function embedding the metadata, and a card saying what it holds. Without:
    the identity, and a card saying the models have none and why (one line, with the fix).
    """
    reason = metadata_skip_reason()
    if reason:
        return (lambda model_bytes: model_bytes), {"embedded": False, "reason": reason}
    from importlib.metadata import version

    h, w = size
    labels = list(labels)
    description = (
        f"Image classifier exported by tlkit: {len(labels)} classes; input RGB {h}x{w}, pixels 0..255 "
        "(normalised inside the model)."
    )
    card = {
        "embedded": True,
        "writer": f"mediapipe {version('mediapipe')} metadata_writers",
        "labels_file": METADATA_LABELS_FILE,
        "input": {"color_space": "RGB", "size": [h, w], "norm_mean": INPUT_NORM_MEAN, "norm_std": INPUT_NORM_STD},
    }
    return (
        lambda model_bytes: add_metadata(model_bytes, labels, name="tlkit image classifier", description=description)
    ), card


def embedded_labels(model_bytes: bytes) -> list[str] | None:
    """The labels embedded in a ``.tflite`` by :func:`add_metadata` (None when it has none); needs no MediaPipe."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
            text = z.read(METADATA_LABELS_FILE).decode("utf-8")
    except (zipfile.BadZipFile, KeyError):
        return None
    return text.split("\n")


def embedded_label_problems(tflite_dir: Path, labels: Sequence[str]) -> list[str]:
    """One line per ``.tflite`` in ``tflite_dir`` whose embedded labels are not ``labels`` (none lacking metadata)."""
    problems = []
    for path in sorted(tflite_dir.glob("*.tflite")):
        found = embedded_labels(path.read_bytes())
        if found is not None and found != list(labels):
            problems.append(f"{path.name}'s embedded labels differ from labels.txt")
    return problems
