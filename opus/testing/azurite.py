"""Azurite's blob service, started for a test session: the real Blob API on a free local port."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Azurite's fixed development account. The key is public, printed in Azurite's documentation: not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{HOST}:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_azurite_blob(executable: Path, location: Path, *, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Start `azurite-blob` storing in `location`; yield its connection string; stop it on exit."""
    if not executable.exists():
        raise FileNotFoundError(f"{executable} is missing: run `make install` (npm ci) first")
    port = free_port()
    command = [
        str(executable), "--silent", "--location", str(location), "--blobHost", HOST, "--blobPort", str(port),
        "--skipApiVersionCheck", "--loose",
    ]
    log = location / "azurite.log"
    # Its output goes to a file, not a pipe: a pipe nobody reads can fill and stall the server.
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        _wait_for_port(process, port, log, start_timeout_s)
        yield connection_string(port)
    finally:
        # SIGINT is Azurite's own shutdown, but it waits for clients' keep-alive connections to close; its
        # data is a temporary folder, so after a short grace it is killed.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float) -> None:
    """Poll until Azurite accepts connections (about 1.5 s); fail with its own words if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace").strip()
            raise RuntimeError(f"azurite-blob exited with {process.returncode}: {output}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"azurite-blob did not listen on port {port} within {timeout_s} s")
