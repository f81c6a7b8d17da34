"""tlkit's custom Keras objects, registered as soon as Keras is imported.

A ``.keras`` file written by tlkit names layers such as ``tlkit>Preprocess``; Keras can
load it only once the module defining the layer has run its
``register_keras_serializable`` decorator. ``import tlkit`` must stay light (no Keras,
no TensorFlow: ``tlkit --help`` is instant), so :func:`install` puts a meta-path hook in
front of the ``keras`` import: when Keras finishes importing, the hook imports the
modules below. ``import tlkit, keras; keras.saving.load_model(...)`` then just works,
in any order. tlkit's own loaders also call :func:`register` before loading.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

# Every module with a @keras.saving.register_keras_serializable object (grep for it when adding one).
MODULES = (
    "tlkit.models.preprocessing",
    "tlkit.models.layers",
    "tlkit.models.cifar_resnet",
    "tlkit.dense.convert",
    "tlkit.dense.upsample",
    "tlkit.finetune.ema",
)


def register() -> None:
    """Import every module that registers a tlkit Keras object (cheap after the first call)."""
    for name in MODULES:
        importlib.import_module(name)


def _register_quietly() -> None:
    # Called from inside an import of keras: a module of ours that is itself importing keras
    # (``import tlkit.models.preprocessing`` first) is half initialised and registers when it
    # finishes; anything else that fails here is retried by register() before loading.
    for name in MODULES:
        if name in sys.modules:
            continue
        with contextlib.suppress(Exception):  # never break ``import keras``
            importlib.import_module(name)


class _RegisteringLoader(importlib.abc.Loader):
    """Keras's own loader, plus registration once the module has executed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        uninstall()
        self.inner.exec_module(module)
        _register_quietly()

    def __getattr__(self, name: str) -> Any:  # resource readers, get_filename, ...
        return getattr(self.inner, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` with the other finders and wraps its loader; steps aside once Keras
    really executes (TensorFlow also calls ``find_spec("keras")`` only to see if it is there)."""

    _searching = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "keras" or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self._searching = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    """Register now if Keras is loaded, else when it is (see the module docstring)."""
    if "keras" in sys.modules:
        _register_quietly()
    elif not any(type(f).__name__ == "_KerasImportHook" for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_KerasImportHook"]
