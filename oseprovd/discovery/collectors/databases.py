"""Database servers: PostgreSQL, MySQL/MariaDB, MongoDB, Redis — installed version,
instances from their configuration, whether they run, and where they listen.

All from files and /proc: no client connects to a server.
"""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery import probe
from oseprovd.discovery.collectors import sockets
from oseprovd.discovery.collectors.containers import installed_versions
from oseprovd.discovery.fsread import read_text, target_reader
from oseprovd.discovery.roots import SystemRoots

MAX_CONF = 1 << 20


class DatabaseInstance(BaseModel):
    name: str  # cluster name (PostgreSQL) or 'default'
    version: str | None = None
    config_file: str | None = None
    port: int | None = None
    bind: list[str] = []  # configured listen addresses
    data_directory: str | None = None
    autostart: bool | None = None
    running: bool = False
    pids: list[int] = []
    listening: list[str] = []  # 'address:port' actually listening on the instance's port


class DatabaseServer(BaseModel):
    engine: str  # postgresql, mysql, mariadb, mongodb, redis
    binary: str | None = None
    version: str | None = None
    version_source: str | None = None
    package: str | None = None
    instances: list[DatabaseInstance] = []


class DatabasesInfo(BaseModel):
    servers: list[DatabaseServer] = []


class _Context:
    def __init__(self, roots: SystemRoots) -> None:
        self.roots = roots
        self.target = target_reader(roots)
        self.procs = probe.process_names(roots.proc)
        self.packages = installed_versions(roots)
        self.listen: dict[int, list[str]] = {}
        for table in ("tcp", "tcp6"):
            text = read_text(roots.proc / "net" / table, 16 << 20) or ""
            for s in sockets.parse_table(text, "tcp", table, sockets.TCP_LISTEN):
                self.listen.setdefault(s.port, []).append(f"{s.address}:{s.port}")

    def listening(self, port: int | None) -> list[str]:
        return sorted(self.listen.get(port, [])) if port else []

    def pid_alive(self, pid: int) -> bool:
        return (self.roots.proc / str(pid)).is_dir()

    def package(self, names: tuple[str, ...]) -> tuple[str | None, str | None]:
        name = next((n for n in names if n in self.packages), None)
        return name, self.packages.get(name) if name else None


def _unquote(value: str) -> str:
    value = value.split("#", 1)[0].strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value


def parse_pg_conf(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            values[key.strip()] = _unquote(value)
    return values


def _postgres_instances(ctx: _Context) -> list[DatabaseInstance]:
    instances = []
    for version in ctx.target.listdir("etc/postgresql"):
        for cluster in ctx.target.listdir(f"etc/postgresql/{version}"):
            conf_rel = f"etc/postgresql/{version}/{cluster}/postgresql.conf"
            text = ctx.target.read_text(conf_rel, MAX_CONF)
            if text is None:
                continue
            conf = parse_pg_conf(text)
            port = int(conf["port"]) if conf.get("port", "").isdigit() else 5432
            data = conf.get("data_directory") or f"/var/lib/postgresql/{version}/{cluster}"
            start_text = ctx.target.read_text(f"etc/postgresql/{version}/{cluster}/start.conf",
                                              4096) or ""
            start = [w for line in start_text.splitlines()
                     for w in line.split("#", 1)[0].split()]
            # postmaster.pid's first line is the server's pid while it runs.
            pid_words = (ctx.target.read_text(f"{data.lstrip('/')}/postmaster.pid", 4096)
                         or "").split()[:1]
            pid = int(pid_words[0]) if pid_words and pid_words[0].isdigit() else None
            running = pid is not None and ctx.pid_alive(pid)
            instances.append(DatabaseInstance(
                name=cluster, version=version, config_file=f"/{conf_rel}", port=port,
                bind=[a.strip() for a in conf.get("listen_addresses", "localhost").split(",")],
                data_directory=data, autostart=(start[:1] or ["auto"])[0] == "auto",
                running=running, pids=[pid] if running and pid else [],
                listening=ctx.listening(port) if running else []))
    return instances


def _postgres(ctx: _Context) -> DatabaseServer | None:
    majors = sorted(ctx.target.listdir("usr/lib/postgresql"), key=lambda v: (len(v), v))
    candidates = tuple(f"/usr/lib/postgresql/{v}/bin/postgres" for v in reversed(majors))
    binary = probe.first_present(ctx.target, (*candidates, "/usr/bin/postgres"))
    package, pkg_version = ctx.package(tuple(f"postgresql-{v}" for v in reversed(majors)))
    instances = _postgres_instances(ctx)
    if binary is None and package is None and not instances:
        return None
    return _server("postgresql", ctx, binary, package, pkg_version, instances=instances)


def _server(engine: str, ctx: _Context, binary: str | None, package: str | None,
            pkg_version: str | None, *, instances: list[DatabaseInstance]) -> DatabaseServer:
    version = probe.program_version(ctx.roots, binary) if binary else None
    source = "binary" if version else None
    if version is None and pkg_version:
        version, source = pkg_version, "package"
    return DatabaseServer(engine=engine, binary=binary, version=version,
                          version_source=source, package=package, instances=instances)


def parse_ini_like(text: str, sections: tuple[str, ...]) -> dict[str, str]:
    """my.cnf: key = value (or bare key) inside the wanted sections; '-' and '_' alike."""
    values: dict[str, str] = {}
    active = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            active = line[1:-1].strip().lower() in sections
        elif active and line and not line.startswith(("!", ";")):
            key, _, value = line.partition("=")
            values[key.strip().replace("-", "_")] = value.strip().strip("\"'")
    return values


def _mysql(ctx: _Context) -> DatabaseServer | None:
    binary = probe.first_present(ctx.target, ("/usr/sbin/mariadbd", "/usr/sbin/mysqld",
                                              "/usr/bin/mariadbd", "/usr/bin/mysqld"))
    package, pkg_version = ctx.package(("mariadb-server", "mariadb-server-core",
                                        "mysql-server", "mysql-server-core-8.0",
                                        "default-mysql-server"))
    files = ["etc/mysql/my.cnf"] + [
        f"{d}/{n}" for d in ("etc/mysql/conf.d", "etc/mysql/mariadb.conf.d",
                             "etc/mysql/mysql.conf.d")
        for n in ctx.target.listdir(d) if n.endswith(".cnf")]
    conf: dict[str, str] = {}
    for rel in files:
        conf.update(parse_ini_like(ctx.target.read_text(rel, MAX_CONF) or "",
                                   ("mysqld", "mariadb", "mariadbd", "server")))
    if binary is None and package is None:
        return None
    engine = "mariadb" if "mariadb" in (binary or package or "") else "mysql"
    port = int(conf["port"]) if conf.get("port", "").isdigit() else 3306
    pids = sorted(ctx.procs.get("mariadbd", []) + ctx.procs.get("mysqld", []))
    instance = DatabaseInstance(
        name="default", port=port, bind=[conf.get("bind_address", "*")],
        data_directory=conf.get("datadir", "/var/lib/mysql"), running=bool(pids), pids=pids,
        config_file="/etc/mysql/my.cnf", listening=ctx.listening(port) if pids else [])
    return _server(engine, ctx, binary, package, pkg_version, instances=[instance])


def parse_mongod_conf(text: str) -> dict[str, str]:
    """The few keys we need from mongod.conf's YAML: storage.dbPath, net.port/bindIp."""
    values: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        key, _, value = line.strip().partition(":")
        if not raw.startswith((" ", "\t")):
            section = key
        elif value.strip():
            values[f"{section}.{key.strip()}"] = value.strip().strip("\"'")
    return values


def _mongodb(ctx: _Context) -> DatabaseServer | None:
    binary = probe.first_present(ctx.target, ("/usr/bin/mongod", "/usr/local/bin/mongod"))
    package, pkg_version = ctx.package(("mongodb-org-server", "mongodb-server"))
    if binary is None and package is None:
        return None
    conf = parse_mongod_conf(ctx.target.read_text("etc/mongod.conf", MAX_CONF) or "")
    port = int(conf["net.port"]) if conf.get("net.port", "").isdigit() else 27017
    pids = sorted(ctx.procs.get("mongod", []))
    instance = DatabaseInstance(
        name="default", port=port, bind=conf.get("net.bindIp", "127.0.0.1").split(","),
        data_directory=conf.get("storage.dbPath", "/var/lib/mongodb"), running=bool(pids),
        pids=pids, config_file="/etc/mongod.conf",
        listening=ctx.listening(port) if pids else [])
    return _server("mongodb", ctx, binary, package, pkg_version, instances=[instance])


def _redis(ctx: _Context) -> DatabaseServer | None:
    binary = probe.first_present(ctx.target, ("/usr/bin/redis-server",
                                              "/usr/local/bin/redis-server"))
    package, pkg_version = ctx.package(("redis-server", "redis"))
    if binary is None and package is None:
        return None
    conf: dict[str, str] = {}
    for line in (ctx.target.read_text("etc/redis/redis.conf", MAX_CONF) or "").splitlines():
        words = line.split("#", 1)[0].split(maxsplit=1)
        if len(words) == 2:
            conf[words[0].lower()] = words[1].strip()
    port = int(conf["port"]) if conf.get("port", "").isdigit() else 6379
    pids = sorted(ctx.procs.get("redis-server", []))
    instance = DatabaseInstance(
        name="default", port=port or None, bind=conf.get("bind", "127.0.0.1 ::1").split(),
        data_directory=conf.get("dir", "/var/lib/redis"), running=bool(pids), pids=pids,
        config_file="/etc/redis/redis.conf", listening=ctx.listening(port) if pids else [])
    # redis-server --version prints "Redis server v=7.0.15 sha=...": the first x.y.z.
    return _server("redis", ctx, binary, package, pkg_version, instances=[instance])


def collect(roots: SystemRoots) -> DatabasesInfo:
    ctx = _Context(roots)
    found = [f(ctx) for f in (_postgres, _mysql, _mongodb, _redis)]
    return DatabasesInfo(servers=[s for s in found if s is not None])
