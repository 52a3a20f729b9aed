"""A study server in its own process, for the tests and the load benchmark that need a real one
(``kill -9``, concurrency over HTTP)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_port", "served_study"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_study(folder: Path, log: Path, admin_token: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``blending.survey.server.serve`` of ``folder`` in a new process on a free port, its output
    appended to ``log``; its base URL and process, once it answers. Stopped on exit."""
    import httpx

    port = free_port()
    code = f"from blending.survey.server import serve; serve({str(folder)!r}, port={port}, admin_token={admin_token!r})"
    with open(log, "a") as out:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the study server did not start:\n{Path(log).read_text()}")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
