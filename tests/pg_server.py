"""A private PostgreSQL server for the tests: a fresh data directory on a free port, from the
installed server binaries (Debian's `postgresql` package: /usr/lib/postgresql/<version>/bin).
As root it runs as the `postgres` user (the server refuses to run as root)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Optional


def _bindir() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, durable: bool = False):
        """durable: sync commits to disk as a real server does (the tests do not: faster, same semantics)."""
        self.durable = durable
        self.bindir = _bindir()
        self.folder: Optional[Path] = None
        self.port = 0
        self._as: list = []

    def start(self) -> str:
        """Start it; return the URL of its `postgres` database. Raises RuntimeError saying why it cannot."""
        if self.bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb) found: apt-get install postgresql")
        self.folder = Path(tempfile.mkdtemp(prefix="fal-audio-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no `postgres` user to run the server as") from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.port = _free_port()
        self.restart()
        return self.url()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def empty_books(self) -> str:
        """The default database without any of the pack's tables (the next journal creates them anew); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS schema_version, requests, ledger, ledger_totals, uploads")
        return self.url()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=60)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def running(self) -> bool:
        return bool(self.folder) and (self.folder / "data" / "postmaster.pid").exists()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Start the server (again, after stop()) on its port."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", str(self.folder / "log"), "-w",
                  "-t", "30", "start")

    def remove(self) -> None:
        self.stop("immediate")
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
