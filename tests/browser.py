"""What the browser tests share: `caption.py --serve` started on a free port and stopped, and Debian's headless
Chromium driven by playwright (never `playwright install`: .ci/run installs Debian's `chromium`).

    playwright = require_browser()
    with page_server(checkpoint) as (url, server), playwright.sync_playwright() as p:
        browser = chromium(p, tmp_path / "profile")
        ...
    assert "serving" in printed(server)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def require_browser():
    """playwright's sync API, or a skip naming what is missing (Chromium, playwright, gradio)."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does it)")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    pytest.importorskip("gradio", reason="gradio is not installed (pip install gradio)")
    return playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def page_server(
    checkpoint: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`caption.py --serve` on a free loopback port, once its page answers: (its URL, the process). Stopped after the
    block. What it prints goes to a file: `printed(server)` reads it, while it runs or after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.NamedTemporaryFile("w+", prefix="page-server-", suffix=".log") as log:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "caption.py"), "--serve", "--checkpoint", str(checkpoint), "--port",
             str(port), *extra],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
        )  # fmt: skip
        server.log_path = Path(log.name)
        try:
            wait_for_page(url, server)
            yield url, server
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def printed(server: subprocess.Popen) -> str:
    """What `caption.py --serve` has printed so far."""
    return server.log_path.read_text()


def wait_for_page(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"caption.py --serve exited with {server.returncode}: {printed(server)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the page at {url} did not come up in {timeout:.0f} s")


def chromium(p, profile: Path):
    """A headless Chromium with a fresh, empty user-data-dir (no cookies, no login yet)."""
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
