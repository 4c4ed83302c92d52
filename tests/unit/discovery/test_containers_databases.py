"""Containers and databases: sandbox roots with real processes, sockets and listeners
made by the test; on this machine, compared with pg_lsclusters and the tools' output."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oseprovd.discovery.collectors import containers, databases
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import require_tool, run_tool, write


@pytest.fixture
def named_process(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a real process whose name (comm) is the given name: a copy of sleep."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> int:
        exe = tmp_path / "bin" / name
        exe.parent.mkdir(exist_ok=True)
        shutil.copy(require_tool("sleep"), exe)
        proc = subprocess.Popen([str(exe), "60"])
        started.append(proc)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != name[:15]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return proc.pid

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def _exe(base: Path, rel: str) -> None:
    write(base, rel, "#!/bin/sh\nexit 0\n", mode=0o755)


def test_docker_in_sandbox_root(tmp_path: Path,
                                named_process: Callable[[str], int]) -> None:
    root = tmp_path / "root"
    _exe(root, "usr/bin/dockerd")
    write(root, "var/lib/dpkg/status", "Package: docker.io\nStatus: install ok installed\n"
          "Architecture: amd64\nVersion: 20.10.24+dfsg1-1+b3\n\n")
    (root / "run").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "run/docker.sock"))
    try:
        pid = named_process("dockerd")
        # Live /proc (our child), sandbox target and run root: no binary is executed.
        roots = SystemRoots(target=root, run=root / "run")
        info = containers.collect(roots)
    finally:
        sock.close()
    docker = next(r for r in info.runtimes if r.name == "docker")
    assert docker.installed and docker.binary == "/usr/bin/dockerd"
    assert (docker.version, docker.version_source) == ("20.10.24+dfsg1-1+b3", "package")
    assert docker.running and pid in docker.pids
    assert docker.sockets == ["/run/docker.sock"]
    assert {r.name for r in info.runtimes} >= {"docker"}
    assert "podman" not in {r.name for r in info.runtimes}


def test_live_container_tools_versions_match_their_output() -> None:
    info = containers.collect(SystemRoots())
    for runtime in info.runtimes:
        if runtime.version_source == "binary" and runtime.binary:
            out = subprocess.run([runtime.binary, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False)
            assert runtime.version in (out.stdout + out.stderr)
    out = run_tool("systemd-detect-virt", "--container", check=False).strip()
    assert info.host_container_kind == (None if out == "none" else out)


def test_postgres_cluster_in_sandbox_running_and_listening(
        tmp_path: Path, listener: int) -> None:
    root = tmp_path / "root"
    _exe(root, "usr/lib/postgresql/16/bin/postgres")
    write(root, "etc/postgresql/16/web/postgresql.conf",
          f"data_directory = '/srv/pg/web'\t# moved\nport = {listener}\n"
          "listen_addresses = 'localhost,10.0.0.5'\n#port = 1\n")
    write(root, "etc/postgresql/16/web/start.conf", "# comment\nmanual\n")
    write(root, "srv/pg/web/postmaster.pid", f"{os.getpid()}\n/srv/pg/web\n")
    write(root, "etc/postgresql/16/old/postgresql.conf", "port = 5999\n")
    info = databases.collect(SystemRoots(target=root, run=root / "run"))
    pg = next(s for s in info.servers if s.engine == "postgresql")
    assert pg.binary == "/usr/lib/postgresql/16/bin/postgres"
    by = {i.name: i for i in pg.instances}
    web = by["web"]
    assert (web.version, web.port, web.data_directory) == ("16", listener, "/srv/pg/web")
    assert web.bind == ["localhost", "10.0.0.5"] and web.autostart is False
    assert web.running and web.pids == [os.getpid()]
    assert web.listening == [f"127.0.0.1:{listener}"]
    old = by["old"]
    assert (old.port, old.running, old.data_directory) == (
        5999, False, "/var/lib/postgresql/16/old")


def test_redis_and_mariadb_in_sandbox(tmp_path: Path, listener: int,
                                      named_process: Callable[[str], int]) -> None:
    root = tmp_path / "root"
    _exe(root, "usr/bin/redis-server")
    write(root, "etc/redis/redis.conf", f"bind 127.0.0.1 -::1\nport {listener}\n"
          "dir /srv/redis\n# port 1\n")
    _exe(root, "usr/sbin/mariadbd")
    write(root, "etc/mysql/my.cnf", "[client]\nport = 1\n[mysqld]\nport = 3307\n"
          "datadir = /srv/mysql\nbind-address = 0.0.0.0\n")
    pid = named_process("redis-server")
    info = databases.collect(SystemRoots(target=root, run=root / "run"))
    by = {s.engine: s for s in info.servers}
    redis = by["redis"].instances[0]
    assert (redis.port, redis.data_directory, redis.bind) == (
        listener, "/srv/redis", ["127.0.0.1", "-::1"])
    assert pid in redis.pids and redis.listening == [f"127.0.0.1:{listener}"]
    maria = by["mariadb"].instances[0]
    assert (maria.port, maria.data_directory, maria.bind) == (3307, "/srv/mysql", ["0.0.0.0"])
    assert "mongodb" not in by and "postgresql" not in by


def test_live_postgres_clusters_match_pg_lsclusters() -> None:
    info = databases.collect(SystemRoots())
    pg = next((s for s in info.servers if s.engine == "postgresql"), None)
    if not Path("/etc/postgresql").is_dir():
        assert pg is None or pg.instances == []
        return
    out = run_tool("pg_lsclusters", "--no-header")
    truth = {}
    for line in out.splitlines():
        ver, cluster, port, status, _owner, data = line.split()[:6]
        truth[(ver, cluster)] = (int(port), status.startswith("online"), data)
    assert pg is not None
    assert {(i.version, i.name): (i.port, i.running, i.data_directory)
            for i in pg.instances} == truth
    if pg.version_source == "binary":
        assert pg.binary is not None
        assert pg.version in run_tool(pg.binary, "--version")
