"""tf.distribute strategies, and a launcher that starts N local workers on loopback.

A ``MultiWorkerMirroredStrategy`` must exist before TensorFlow runs its first op
("Collective ops must be configured at program startup"), so :func:`create_strategy`
is the first thing a distributed command does. Workers and ranks come from the
standard ``TF_CONFIG`` variable, as a cluster manager (Kubernetes' TFJob, Vertex AI)
sets it; :func:`launch_local_workers` sets it for N processes on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from tlkit.errors import ConfigError, TlkitError

STRATEGIES = ("mirrored", "multi-worker")
# A worker that loses its peer fails its next collective after this long, instead of hanging.
COLLECTIVE_TIMEOUT_S = float(os.environ.get("TLKIT_COLLECTIVE_TIMEOUT", "120"))


class WorkerFailedError(TlkitError):
    """A worker of a multi-worker run died; the run can be continued with ``--resume``."""


def create_strategy(kind: str | None) -> Any:
    """The strategy for ``--distribute`` (``None``: the default one-device strategy)."""
    import tensorflow as tf

    if kind in (None, "none"):
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi-worker":
        if not read_tf_config():
            raise ConfigError(
                "--distribute multi-worker needs TF_CONFIG (set by the cluster manager), or "
                "--workers N to start N local workers"
            )
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ConfigError(f"unknown --distribute {kind!r}; use one of {', '.join(STRATEGIES)}")


def is_multi_worker(strategy: Any) -> bool:
    """True for a strategy whose replicas live in several processes."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return bool(getattr(resolver, "task_type", None))


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run directory: always, except for the non-chief
    workers of a multi-worker strategy (the chief, or worker 0 when there is no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    return _is_chief_task(task_type, resolver.task_id, resolver.cluster_spec().as_dict() if resolver else {})


def input_shard(strategy: Any) -> Any:
    """This worker's :class:`tlkit.data.sharding.Shard` under a multi-worker strategy (None otherwise):
    its input pipeline's place as tf.distribute numbers them (a chief first, then the workers)."""
    from tlkit.data.sharding import Shard

    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return None
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    count = chiefs + len(cluster.get("worker", []))
    index = 0 if task_type == "chief" else chiefs + int(resolver.task_id or 0)
    return Shard(index, count)


def _is_chief_task(task_type: str | None, task_id: Any, cluster: dict) -> bool:
    if not task_type or task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in cluster


def read_tf_config() -> dict:
    """``TF_CONFIG`` parsed ({} when unset); a malformed one is refused with a message."""
    text = os.environ.get("TF_CONFIG") or ""
    if not text.strip():
        return {}
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({exc}); it should look like "
            f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", "index": 0}}}}'
        ) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster", {}), dict):
        raise ConfigError("TF_CONFIG must be a JSON object with a 'cluster' object and a 'task'")
    return cfg


def chief_by_tf_config() -> bool:
    """:func:`is_chief` from ``TF_CONFIG``, before any strategy exists (so that non-chief
    workers never lock or write the run directory)."""
    cfg = read_tf_config()
    task = cfg.get("task") or {}
    return _is_chief_task(task.get("type"), task.get("index"), cfg.get("cluster") or {})


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on loopback right now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a loopback cluster."""
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def launch_local_workers(argv: Sequence[str], workers: int, *, timeout: float | None = None, log: Any = print) -> int:
    """Run ``tlkit ARGV`` as ``workers`` processes of one multi-worker job on loopback.

    Worker 0 is the chief: its output is shown; the others write ``worker-I.log`` in a
    temporary folder (kept, and named, if the job fails). If one worker dies, the others
    are stopped (they would wait for it in their next collective) and
    :class:`WorkerFailedError` says how to continue. Ctrl-C stops all.
    """
    import shutil
    import tempfile

    if workers < 2:
        raise ConfigError(f"--workers must be at least 2, got {workers}")
    ports = free_ports(workers)
    logs = tempfile.mkdtemp(prefix="tlkit-workers-")
    procs: list[subprocess.Popen] = []
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    cmd = [sys.executable, "-m", "tlkit", *argv]
    log(f"starting {workers} workers on localhost ports {', '.join(map(str, ports))}")
    try:
        for i in range(workers):
            env = {**base_env, "TF_CONFIG": tf_config(ports, i)}
            if i == 0:
                procs.append(subprocess.Popen(cmd, env=env))
            else:
                with open(os.path.join(logs, f"worker-{i}.log"), "w") as out:
                    procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                if code == 2:  # a refused command (a user error), not a lost worker: nothing to resume
                    if i != 0:  # the chief refuses the same command a moment later, and says why
                        try:
                            procs[0].wait(timeout=15)
                        except subprocess.TimeoutExpired:
                            pass
                    _stop_all(procs)
                    if procs[0].returncode == 2:
                        shutil.rmtree(logs, ignore_errors=True)
                        return 2  # the chief said why, on our stderr
                    raise ConfigError(f"worker {i} refused the command{_last_line(logs, i)}")
                _stop_all(procs)
                raise WorkerFailedError(
                    f"worker {i} exited with status {code}{_last_line(logs, i)}; the other workers were stopped "
                    f"(logs: {logs}). Run the same command with --resume to continue from the last completed epoch"
                )
            if all(c == 0 for c in codes):
                shutil.rmtree(logs, ignore_errors=True)
                return 0
            if deadline is not None and time.monotonic() > deadline:
                _stop_all(procs)
                raise WorkerFailedError(
                    f"the workers did not finish within {timeout:.0f} s; stopped them (logs: {logs})"
                )
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop_all(procs, signal.SIGINT)
        raise


def _last_line(logs: str, index: int) -> str:
    """': <the worker's last error line>' from its log, or ''."""
    try:
        with open(os.path.join(logs, f"worker-{index}.log"), errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return ""
    return f" ({lines[-1][:300]})" if lines else ""


def _stop_all(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
