"""A PostgreSQL server of a test's own, on its own loopback port: stopped and started by the
test (a database that restarts under load), never the machine's shared one.

Made with the machine's initdb and pg_ctl, run as the `postgres` user when the test runs as
root (PostgreSQL refuses to run as root). Skipped with the reason where those are missing,
except under FHIR_ADAPTER_REQUIRE_PG=1 (CI), where that fails.
"""
from __future__ import annotations

import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["OwnPostgres"]


def _binaries() -> pathlib.Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return pathlib.Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return pathlib.Path(on_path).parent if on_path else None


class OwnPostgres:
    def __init__(self) -> None:
        bin_dir = _binaries()
        if bin_dir is None:
            message = "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
            if os.environ.get("FHIR_ADAPTER_REQUIRE_PG") == "1":
                pytest.fail(message)
            pytest.skip(message)
        self.bin = bin_dir
        # Its own folder under /tmp, not under pytest's (which pytest keeps 0700 to other users).
        self.folder = folder = pathlib.Path(tempfile.mkdtemp(prefix="fhir-adapter-pg-"))
        self.data = folder / "pgdata"
        self.data.mkdir(parents=True)
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            record = pwd.getpwnam(self.user)
            for path in (folder, self.data):
                os.chown(path, record.pw_uid, record.pw_gid)
            folder.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=120, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stdout} {done.stderr}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def wait_ready(self, seconds: float = 30) -> None:
        import psycopg
        deadline = time.monotonic() + seconds
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
