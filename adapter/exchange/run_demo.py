"""`fhir-adapter exchange demo`: the topology of adapter/exchange/demo.py as real processes."""
from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import requests

from adapter.exchange.demo import centre_keys, prepare_centre, prepare_site, register_centre
from adapter.private import open_private
from adapter.workers import die_with_parent

__all__ = ["run_demo"]

SITES = ("site-a", "site-b")
_MARKER = ".exchange-demo"


def _url(folder: pathlib.Path, name: str) -> str:
    return f"sqlite:///{folder / name / 'adapter.db'}"


def _stop_on_sigterm(number: int, frame: object) -> None:
    raise SystemExit(128 + number)  # through the `finally` that stops the gateways


@contextlib.contextmanager
def _gateways(folder: pathlib.Path, port: int) -> Iterator[dict[str, str]]:
    """`fhir-adapter serve --auth` for each site and the centre; stopped on the way out."""
    processes, bases = [], {}
    try:
        for offset, name in enumerate((*SITES, "centre")):
            base = f"http://127.0.0.1:{port + offset}/fhir"
            # 0600: the log names clients and the paths they asked for
            with open_private(folder / name / "gateway.log", "ab") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "adapter.cli", "serve", "--auth", "--host", "127.0.0.1",
                     "--port", str(port + offset), "--workers", "1", "--base-url", base, "--db", _url(folder, name)],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "FHIR_ADAPTER_AUDIT": "off"},
                    # it ends (SIGTERM: gunicorn's clean stop) when the demo does, even by kill -9:
                    # left alone, the three servers went on holding their ports
                    preexec_fn=functools.partial(die_with_parent, os.getpid(), signal.SIGTERM)))
            bases[name] = base
        for name, base in bases.items():
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/metadata", timeout=5)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not start: see {folder / name / 'gateway.log'}") from None
                    time.sleep(0.2)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def run_demo(folder: pathlib.Path, port: int, once: bool, say: Callable[[str], None]) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()) and not (folder / _MARKER).exists():
        say(f"{folder} is not empty and was not made by `exchange demo`: give another --folder")
        return 2
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / _MARKER).write_text("made by fhir-adapter exchange demo; remade on each run\n")
    for name in (*SITES, "centre"):
        (folder / name).mkdir(parents=True)
    private, public = centre_keys(folder / "centre" / "keys")
    for site in SITES:
        done = prepare_site(_url(folder, site), site)
        register_centre(_url(folder, site), public)
        say(f"{site}: {done['summary']}; the centre registered under the policy centre-v1")
    prepare_centre(_url(folder, "centre"))
    with _gateways(folder, port) as bases:
        for name, base in bases.items():
            say(f"{name}: {base}")
        pull = [sys.executable, "-m", "adapter.cli", "exchange", "pull", "--client-id", "centre",
                "--key", str(private), "--db", _url(folder, "centre")]
        for site in SITES:
            pull += ["--site", site, "--from", bases[site]]
        say("the centre pulls: " + " ".join(pull[2:]))
        pulled = subprocess.run(pull).returncode
        subprocess.run([sys.executable, "-m", "adapter.cli", "exchange", "status", "--db", _url(folder, "centre")])
        if once or pulled:
            return pulled
        say(f"\nTry: curl '{bases['centre']}/metadata' (every other request needs a token: see docs/authorisation.md)."
            "\nPull again (only what changed): the command above. Stop with Ctrl-C.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
