"""`fhir-adapter exchange demo` as a person runs it (SQLite stores, its own three gateways): their
logs are private, and stopping the demo stops them (issue 25, item 7)."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

from conftest import ROOT
from test_serve_security import _free_port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_keeps_its_logs_private_and_takes_its_gateways_with_it(tmp_path):
    while True:  # three ports in a row
        port = _free_port()
        if not any(_listening(port + n) for n in range(3)):
            break
    demo = subprocess.Popen([sys.executable, "-m", "adapter.cli", "exchange", "demo", "--folder", str(tmp_path / "demo"),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        seen = []
        deadline = time.monotonic() + 240
        while not any("Stop with Ctrl-C" in line for line in seen):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(seen)[-3000:]
            seen.append(demo.stdout.readline())
        assert all(_listening(port + n) for n in range(3))
        for name in ("site-a", "site-b", "centre"):
            mode = stat.S_IMODE((tmp_path / "demo" / name / "gateway.log").stat().st_mode)
            assert mode == 0o600, (name, oct(mode))  # was 0644
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) != 0
        deadline = time.monotonic() + 30
        while any(_listening(port + n) for n in range(3)):  # they survived it, holding their ports
            assert time.monotonic() < deadline, "a gateway outlived the demo"
            time.sleep(0.2)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=30)
