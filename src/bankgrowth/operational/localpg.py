"""A throwaway PostgreSQL server on loopback, started from the machine's own binaries.

The ledger tests and the grant benchmark run against a real server. PostgreSQL refuses to run as
root, so when the caller is root the server runs as the ``postgres`` system user (which Debian's
package creates) through ``runuser``. The data folder is deleted when the server stops.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bankgrowth.errors import Unavailable


@dataclass(frozen=True)
class LocalPostgres:
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"


def binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: Debian's newest, else the one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise Unavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl): install the Debian package postgresql",
        "未找到 PostgreSQL 服务端程序（initdb、pg_ctl）：请安装 Debian 软件包 postgresql",
        code="postgres_missing",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], as_user: str | None) -> None:
    command = ["runuser", "-u", as_user, "--", *args] if as_user else args
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Unavailable(
            f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}",
            f"{Path(args[0]).name} 失败：{result.stderr.strip() or result.stdout.strip()}",
            code="postgres_start_failed",
        )


@contextmanager
def local_postgres(*, max_connections: int = 200, settings: dict[str, str] | None = None) -> Iterator[LocalPostgres]:
    """Start a fresh server (trust authentication, loopback only) and stop it on exit."""
    bin_dir = binaries()
    as_user = "postgres" if os.geteuid() == 0 else None
    user = as_user or os.environ.get("USER", "postgres")
    base = Path(tempfile.mkdtemp(prefix="bankgrowth-pg-"))
    data = base / "data"
    if as_user:
        shutil.chown(base, user=as_user)
    port = _free_port()
    options = {"max_connections": str(max_connections), "listen_addresses": "'127.0.0.1'", "fsync": "on"}
    options.update(settings or {})
    try:
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8", "--no-locale"], as_user
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {port}\nunix_socket_directories = '{base}'\n")
            conf.writelines(f"{key} = {value}\n" for key, value in options.items())
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "start"], as_user)
        server = LocalPostgres(port=port, user=user, data_dir=data)
        _wait(port)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user)
        shutil.rmtree(base, ignore_errors=True)


def _wait(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise Unavailable("PostgreSQL did not start listening", "PostgreSQL 未能启动监听", code="postgres_start_failed")


def create_database(server: LocalPostgres, name: str) -> str:
    """A new empty database on ``server``; returns its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, dbname="postgres") as conn:
        conn.autocommit = True
        conn.execute(f'CREATE DATABASE "{name}"')  # name comes from the caller's code, never from input
    return server.url(name)
