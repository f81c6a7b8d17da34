"""Real object-store servers on loopback for the tests: a GCS-API emulator and an S3-API server.

``gcp-storage-emulator`` and ``moto`` (server mode) run as subprocesses on free ports; tlkit
reaches them through the same clients a real bucket uses (gcsfs, s3fs), told only the endpoint
through the standard variables ``STORAGE_EMULATOR_HOST`` and ``AWS_ENDPOINT_URL``. Both come
with the ``cloud`` extra's test dependencies; without them the tests that need them skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Straight to the server on loopback, never through an HTTP(S)_PROXY the machine may set for the registries.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            _LOOPBACK.open(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} in {timeout} s")


def _no_proxy(name: str) -> str:
    given = [h for h in os.environ.get(name, "").split(",") if h.strip()]
    return ",".join(["127.0.0.1", "localhost", *[h for h in given if h.strip() not in ("127.0.0.1", "localhost")]])


@dataclass
class ObjectStores:
    """Both servers, their endpoints and the environment a tlkit subprocess needs to reach them."""

    gcs_endpoint: str
    s3_endpoint: str
    procs: list = field(default_factory=list)
    log_dir: Path | None = None  # gcs.log / s3.log: the servers' request logs

    @property
    def env(self) -> dict[str, str]:
        """Variables that point the real clients at the loopback servers (and give S3 dummy keys)."""
        return {
            "STORAGE_EMULATOR_HOST": self.gcs_endpoint,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # The clients (botocore, aiohttp, google's) honour proxy variables: loopback must bypass them,
            # so no request of a test leaves the machine even where a proxy is set.
            "NO_PROXY": _no_proxy("NO_PROXY"),
            "no_proxy": _no_proxy("no_proxy"),
        }

    def apply(self) -> None:
        """Put :attr:`env` into this process's environment (for in-process clients)."""
        os.environ.update(self.env)

    def make_bucket(self, url: str) -> str:
        """Create the bucket of ``gs://NAME`` or ``s3://NAME`` (names: 3+ lowercase letters, digits, dashes)."""
        from tlkit.storage.remote import filesystem

        self.apply()
        fs = filesystem(url)
        fs.mkdir(url.split("://", 1)[1].split("/", 1)[0])
        return url

    def upload(self, local: Path, url: str) -> str:
        """Copy a local file or folder to ``url`` (recursively)."""
        from tlkit.storage.remote import filesystem

        self.apply()
        filesystem(url).put(str(local), url.rstrip("/"), recursive=Path(local).is_dir())
        return url

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_object_stores(log_dir: Path) -> ObjectStores:
    """Start both servers on free loopback ports; the caller stops them (:meth:`ObjectStores.stop`)."""
    bin_dir = Path(sys.executable).parent
    gcs_bin = shutil.which("gcp-storage-emulator", path=str(bin_dir)) or shutil.which("gcp-storage-emulator")
    moto_bin = shutil.which("moto_server", path=str(bin_dir)) or shutil.which("moto_server")
    if not gcs_bin or not moto_bin:
        raise FileNotFoundError("gcp-storage-emulator or moto_server is not installed")
    gcs_port, s3_port = free_port(), free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [gcs_bin, "start", "--host", "127.0.0.1", "--port", str(gcs_port), "--in-memory"],
            stdout=open(log_dir / "gcs.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [moto_bin, "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=open(log_dir / "s3.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
    ]
    stores = ObjectStores(f"http://127.0.0.1:{gcs_port}", f"http://127.0.0.1:{s3_port}", procs, log_dir)
    try:
        _wait_http(f"{stores.gcs_endpoint}/storage/v1/b", procs[0])
        _wait_http(f"{stores.s3_endpoint}/", procs[1])
    except BaseException:
        stores.stop()
        raise
    return stores
