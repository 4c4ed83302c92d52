"""Services from the target root: systemd unit files, SysV init scripts, supervisord."""

from __future__ import annotations

import configparser
import stat

from pydantic import BaseModel

from oseprovd.discovery.collectors.unitfiles import UnitFile, collect_units
from oseprovd.discovery.fsread import TargetReader, target_reader
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.unitstates import UNITS_TIMEOUT, UnitRuntime, UnitStateSource

_NOT_SCRIPTS = frozenset({"README", "skeleton", "rc", "rcS", "functions", ".depend.boot",
                          ".depend.start", ".depend.stop", ".legacy-bootordering"})
RUNLEVELS = ("0", "1", "2", "3", "4", "5", "6", "S")
SUPERVISOR_MAIN = ("etc/supervisor/supervisord.conf", "etc/supervisord.conf")
SUPERVISOR_DIRS = (("etc/supervisor/conf.d", ".conf"), ("etc/supervisord.d", ".ini"))
MAX_SCRIPT_BYTES = 256 * 1024


class InitScript(BaseModel):
    name: str
    path: str
    provides: list[str] = []
    description: str | None = None
    default_start: list[str] = []
    default_stop: list[str] = []
    start_runlevels: list[str] = []  # where an S## link in /etc/rcN.d starts it
    has_systemd_unit: bool = False  # systemd would use the unit, not this script


class SupervisorProgram(BaseModel):
    name: str
    config: str  # file it is defined in
    command: str | None = None
    autostart: bool = True
    autorestart: str | None = None
    user: str | None = None
    directory: str | None = None
    numprocs: int = 1


class ServicesInfo(BaseModel):
    systemd_units: list[UnitFile] = []
    init_scripts: list[InitScript] = []
    supervisor_programs: list[SupervisorProgram] = []
    # systemd's view, when it was asked (the live system with systemd on the bus):
    systemd_running: bool | None = None  # None: not asked; False: not on the bus
    systemd_error: str | None = None  # asking failed; the unit files still count
    runtime_only_units: list[UnitRuntime] = []  # loaded units without a unit file here


def parse_lsb_header(text: str) -> dict[str, str]:
    """The '### BEGIN INIT INFO' block of an init script."""
    fields: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("### BEGIN INIT INFO"):
            inside = True
        elif line.startswith("### END INIT INFO"):
            break
        elif inside and line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _start_links(target: TargetReader) -> dict[str, list[str]]:
    starts: dict[str, list[str]] = {}
    for level in RUNLEVELS:
        for link in target.listdir(f"etc/rc{level}.d"):
            if link.startswith("S") and len(link) > 3 and link[1:3].isdigit():
                starts.setdefault(link[3:], []).append(level)
    return starts


def init_scripts(target: TargetReader, units: set[str]) -> list[InitScript]:
    starts = _start_links(target)
    scripts: list[InitScript] = []
    for name, st in target.iter_files("etc/init.d"):
        if name in _NOT_SCRIPTS or name.startswith(".") or name.endswith((".sh", ".dpkg-dist")):
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            continue
        header = parse_lsb_header(target.read_text(f"etc/init.d/{name}", MAX_SCRIPT_BYTES) or "")
        scripts.append(InitScript(
            name=name, path=f"etc/init.d/{name}", provides=header.get("Provides", "").split(),
            description=header.get("Short-Description") or header.get("Description"),
            default_start=header.get("Default-Start", "").split(),
            default_stop=header.get("Default-Stop", "").split(),
            start_runlevels=starts.get(name, []),
            has_systemd_unit=f"{name}.service" in units,
        ))
    return scripts


def _supervisor_files(target: TargetReader) -> list[str]:
    files = [f for f in SUPERVISOR_MAIN if target.exists(f)]
    for directory, suffix in SUPERVISOR_DIRS:
        files += [f"{directory}/{n}" for n in target.listdir(directory) if n.endswith(suffix)]
    return files


def _truthy(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "yes", "on", "1")


def supervisor_programs(target: TargetReader) -> list[SupervisorProgram]:
    programs: list[SupervisorProgram] = []
    for rel in _supervisor_files(target):
        parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
        try:
            parser.read_string(target.read_text(rel, MAX_SCRIPT_BYTES) or "", source=rel)
        except configparser.Error:
            continue  # supervisord would refuse it too; nothing runs from it
        for section in parser.sections():
            if not section.startswith("program:"):
                continue
            opts = parser[section]
            numprocs = opts.get("numprocs", "1")
            programs.append(SupervisorProgram(
                name=section.split(":", 1)[1], config=rel, command=opts.get("command"),
                autostart=_truthy(opts.get("autostart"), True),
                autorestart=opts.get("autorestart"), user=opts.get("user"),
                directory=opts.get("directory"),
                numprocs=int(numprocs) if numprocs.isdigit() else 1,
            ))
    return programs


def merge_runtime(units: list[UnitFile], runtime: list[UnitRuntime]
                  ) -> tuple[list[UnitFile], list[UnitRuntime]]:
    """Unit files with systemd's states; the loaded units no file here describes
    (generated under /run, transient, devices, scopes)."""
    by_name = {r.name: r for r in runtime}
    merged = []
    for unit in units:
        state = by_name.pop(unit.name, None)
        merged.append(unit if state is None else unit.model_copy(update={
            "load_state": state.load_state, "active_state": state.active_state,
            "sub_state": state.sub_state}))
    return merged, sorted(by_name.values(), key=lambda r: r.name)


def collect(roots: SystemRoots, unit_states: UnitStateSource | None = None) -> ServicesInfo:
    target = target_reader(roots)
    units = collect_units(target)
    info = ServicesInfo(systemd_units=units,
                        init_scripts=init_scripts(target, {u.name for u in units}),
                        supervisor_programs=supervisor_programs(target))
    if unit_states is None:
        return info
    try:
        runtime = unit_states.list_units(UNITS_TIMEOUT)
    except Exception as exc:  # systemd's failure alone; the files still count
        return info.model_copy(update={"systemd_error": f"{type(exc).__name__}: {exc}"})
    if runtime is None:
        return info.model_copy(update={"systemd_running": False})
    merged, extra = merge_runtime(units, runtime)
    return info.model_copy(update={"systemd_units": merged, "systemd_running": True,
                                   "runtime_only_units": extra})
