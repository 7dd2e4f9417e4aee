"""A real PostgreSQL server for the tests: found on this machine, or installed with apt-get, then started
in a temporary folder on a free port (trust authentication, loopback only) and stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg

USER = "latentdex"


@dataclass
class PostgresServer:
    host: str
    port: int
    _numbers: Iterator[int]

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"store_{next(self._numbers)}"
        with psycopg.connect(
            f"host={self.host} port={self.port} user={USER} dbname=postgres", autocommit=True
        ) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{USER}@{self.host}:{self.port}/{name}"


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, installing PostgreSQL with apt-get if need be and possible."""
    for candidate in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))]:
        if candidate and Path(candidate).with_name("pg_ctl").exists():
            return Path(candidate).parent
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
            return None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def start_postgres() -> tuple[PostgresServer, Callable[[], None]]:
    """Start a server; (the server, a function that stops it). RuntimeError if that cannot be done."""
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL here, and apt-get could not install it")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="latentdex-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True).returncode
        ):
            raise RuntimeError("running as root without a postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)

    return PostgresServer("127.0.0.1", port, count(1)), stop
