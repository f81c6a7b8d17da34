"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow's C++ runtime writes its start-up lines (absl's "All log messages before
absl::InitializeLog()", oneDNN, CUDA stubs, cuInit failures) straight to file
descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` is read, so no environment variable
silences them all. The only reliable way is to point fd 2 elsewhere while the runtime
starts and to put it back afterwards. What was captured is replayed if the start
fails, so nothing useful is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

_done = False


@contextlib.contextmanager
def captured_stderr(enabled: bool = True) -> Iterator[None]:
    """File descriptor 2 goes to a temporary file inside the block (child processes too);
    what was written is replayed on stderr if the block raises."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                capture.seek(0)
                sys.stderr.write(capture.read().decode("utf-8", "replace"))


def import_tensorflow_quietly(verbose: bool = False) -> None:
    """Import TensorFlow (and Keras) and initialise its devices with fd 2 captured.

    With ``verbose`` nothing is captured. Safe to call more than once.
    """
    global _done
    if _done:
        return
    _done = True
    # 3 outside --verbose: TensorFlow's C++ runtime also logs benign ERROR lines while it runs (a
    # oneDNN note for every uint8 transpose, which the EXIF turn uses; graph rewrites), which would
    # break the CLI's one-line errors. tlkit reports every failure itself, from the Python exception.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    with captured_stderr(not verbose):
        import keras  # noqa: F401
        import tensorflow as tf

        # Device discovery is where CUDA reports a missing driver: do it now, captured.
        tf.config.list_physical_devices()


class _QuietTensorFlowFinder:
    """A meta-path hook: the first ``import tensorflow`` (direct, or through Keras) runs
    :func:`import_tensorflow_quietly`, so commands that never touch TensorFlow stay fast
    and those that do start quietly."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "tensorflow":
            return None
        uninstall_quiet_import_hook()
        import_tensorflow_quietly(self.verbose)
        import importlib.machinery

        module = sys.modules["tensorflow"]
        return importlib.machinery.ModuleSpec(name, _Loaded(module), is_package=True)


class _Loaded:
    """Loader for a module already imported: hands it back unchanged."""

    def __init__(self, module: object) -> None:
        self.module = module

    def create_module(self, spec: object) -> object:
        return self.module

    def exec_module(self, module: object) -> None:
        return None


def install_quiet_import_hook(verbose: bool = False) -> None:
    """Make the process's first TensorFlow import a quiet one (see the module docstring)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder(verbose))


def uninstall_quiet_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowFinder)]
