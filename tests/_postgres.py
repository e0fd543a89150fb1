"""A throwaway PostgreSQL server for the tests: Debian's binaries (``initdb``, ``pg_ctl``) in a
temporary folder, listening only on a Unix socket there; run as the ``postgres`` user when the
tests run as root (``initdb`` refuses root). One server per test session (per xdist worker), one
fresh database per test."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: the newest /usr/lib/postgresql/N/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PostgresServer:
    """``start()`` it, get database URLs from :meth:`new_database`, ``stop()`` it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="paizoo-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self._as_user: list[str] = []
        self._counter = itertools.count()
        self._admin = None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *args], capture_output=True, text=True,
                              timeout=120, check=False)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            shutil.chown(self.root, user="postgres", group="postgres")
            runuser = shutil.which("runuser")
            self._as_user = [runuser, "-u", "postgres", "--"] if runuser else [
                "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        init = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                         "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        options = (f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        start = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                          "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        if start.returncode != 0:
            log = (self.root / "server.log")
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {detail[-500:]}")
        return self

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A URL of a new, empty database."""
        import psycopg

        if self._admin is None:
            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        name = f"t{os.getpid()}_{next(self._counter)}"
        self._admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> tuple[PostgresServer | None, str]:
    """A started server, or ``None`` and the reason why there cannot be one."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install 'paizoo[postgres]' or make setup)"
    bindir = find_bindir()
    if bindir is None:
        return None, ("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
                      "apt-get install postgresql (make setup does it when run as root)")
    server = PostgresServer(bindir)
    try:
        return server.start(), ""
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as exc:
        server.stop()
        return None, f"could not start a PostgreSQL server from {bindir}: {exc}"
