"""Services placed in a sandbox root appear; unit states agree with systemctl --root."""

from __future__ import annotations

import os
from pathlib import Path

from oseprovd.discovery.collectors import services
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import run_tool, symlink, write

LIB = "usr/lib/systemd/system"
ETC = "etc/systemd/system"
WANTS = f"{ETC}/multi-user.target.wants"


def _systemctl_states(root: str) -> dict[str, str]:
    out = run_tool("systemctl", f"--root={root}", "list-unit-files", "--no-pager",
                   "--no-legend", "--plain")
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def unit(body: str, install: str = "") -> str:
    return f"[Unit]\nDescription=test unit\n[Service]\nExecStart=/bin/true\n{body}" + (
        f"[Install]\n{install}\n" if install else "")


def _units(base: Path) -> None:
    write(base, f"{LIB}/web.service", unit("Type=notify\nUser=www-data\n",
                                           "WantedBy=multi-user.target"))
    symlink(base, f"{WANTS}/web.service", f"/{LIB}/web.service")
    write(base, f"{LIB}/static.service", unit(""))
    write(base, f"{LIB}/off.service", unit("", "WantedBy=multi-user.target"))
    write(base, f"{LIB}/masked.service", unit("", "WantedBy=multi-user.target"))
    symlink(base, f"{ETC}/masked.service", "/dev/null")
    write(base, f"{LIB}/tpl@.service", unit("", "WantedBy=multi-user.target"))
    symlink(base, f"{WANTS}/tpl@a.service", f"/{LIB}/tpl@.service")
    write(base, f"{LIB}/orig.service", unit("", "Alias=nick.service"))
    symlink(base, f"{ETC}/nick.service", f"/{LIB}/orig.service")
    write(base, f"{LIB}/also.service", unit("", "Also=static.service"))
    write(base, f"{LIB}/vendorwants.service", unit("", "WantedBy=multi-user.target"))
    symlink(base, f"{LIB}/multi-user.target.wants/vendorwants.service", "../vendorwants.service")
    write(base, f"{ETC}/local.service", unit("ExecStart=/usr/local/bin/thing \\\n  --flag\n",
                                             "WantedBy=multi-user.target"))
    write(base, f"{ETC}/web.service.d/override.conf", "[Service]\nNice=5\n")
    write(base, f"{LIB}/multi-user.target", "[Unit]\nDescription=Multi-User\n")
    write(base, f"{LIB}/backup.timer", "[Timer]\nOnCalendar=daily\n[Install]\n"
          "WantedBy=timers.target\n")


def test_unit_states_match_systemctl_on_a_sandbox_root(sandbox: Path) -> None:
    _units(sandbox)
    info = services.collect(SystemRoots.sandbox(sandbox))
    ours = {u.name: u.state for u in info.systemd_units}
    assert ours == _systemctl_states(str(sandbox))
    by = {u.name: u for u in info.systemd_units}
    web = by["web.service"]
    assert web.enabled_in == ["multi-user.target"] and web.wanted_by == ["multi-user.target"]
    assert (web.service_type, web.user) == ("notify", "www-data")
    assert web.dropins == [f"{ETC}/web.service.d/override.conf"]
    assert by["tpl@.service"].instances == ["tpl@a.service"]
    assert by["nick.service"].alias_of == "orig.service"
    assert by["local.service"].exec_start == ["/bin/true", "/usr/local/bin/thing --flag"]


def test_merged_usr_is_not_listed_twice(sandbox: Path) -> None:
    write(sandbox, f"{LIB}/only.service", unit(""))
    symlink(sandbox, "lib", "usr/lib")
    info = services.collect(SystemRoots.sandbox(sandbox))
    assert [u.name for u in info.systemd_units] == ["only.service"]


def test_lib_overridden_by_etc(sandbox: Path) -> None:
    write(sandbox, "lib/systemd/system/x.service", unit("User=vendor\n"))
    write(sandbox, f"{ETC}/x.service", unit("User=admin\n"))
    info = services.collect(SystemRoots.sandbox(sandbox))
    assert [(u.path, u.user) for u in info.systemd_units] == [(f"{ETC}/x.service", "admin")]


def test_init_script_appears_with_runlevels(sandbox: Path) -> None:
    write(sandbox, "etc/init.d/legacyd", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: legacyd\n"
          "# Required-Start: $network\n# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n"
          "# Short-Description: A legacy daemon\n### END INIT INFO\nexit 0\n", mode=0o755)
    write(sandbox, "etc/init.d/README", "not a script\n")
    write(sandbox, "etc/init.d/notexec", "#!/bin/sh\n", mode=0o644)
    for level in "2345":
        symlink(sandbox, f"etc/rc{level}.d/S01legacyd", "../init.d/legacyd")
    symlink(sandbox, "etc/rc0.d/K01legacyd", "../init.d/legacyd")
    info = services.collect(SystemRoots.sandbox(sandbox))
    assert [s.name for s in info.init_scripts] == ["legacyd"]
    script = info.init_scripts[0]
    assert script.provides == ["legacyd"] and script.description == "A legacy daemon"
    assert script.default_start == ["2", "3", "4", "5"] and script.default_stop == ["0", "1", "6"]
    assert script.start_runlevels == ["2", "3", "4", "5"]
    assert script.has_systemd_unit is False


def test_supervisord_programs_appear(sandbox: Path) -> None:
    write(sandbox, "etc/supervisor/supervisord.conf", "[supervisord]\nlogfile=/var/log/s.log\n"
          "[include]\nfiles = /etc/supervisor/conf.d/*.conf\n")
    write(sandbox, "etc/supervisor/conf.d/worker.conf",
          "[program:worker]\ncommand=/usr/bin/python3 -m worker --queue=%(ENV_Q)s\n"
          "autostart=false\nautorestart=unexpected\nuser=app ; the app user\nnumprocs=4\n"
          "directory=/srv/app\n\n[program:beat]\ncommand=/usr/bin/beat\n")
    write(sandbox, "etc/supervisor/conf.d/broken.conf", "this is not ini\n")
    info = services.collect(SystemRoots.sandbox(sandbox))
    by = {p.name: p for p in info.supervisor_programs}
    assert set(by) == {"worker", "beat"}
    w = by["worker"]
    assert w.command == "/usr/bin/python3 -m worker --queue=%(ENV_Q)s"
    assert (w.autostart, w.autorestart, w.user, w.numprocs, w.directory) == (
        False, "unexpected", "app", 4, "/srv/app")
    assert by["beat"].autostart is True
    assert w.config == "etc/supervisor/conf.d/worker.conf"


def test_live_unit_states_match_systemctl() -> None:
    truth = _systemctl_states("/")
    info = services.collect(SystemRoots())
    ours = {u.name: u.state for u in info.systemd_units}
    # Units that exist only under /run (generated, transient, runtime) are not files
    # of the target root; everything else must agree exactly.
    runtime = {"generated", "transient", "enabled-runtime", "linked-runtime",
               "masked-runtime"}
    assert {n: s for n, s in truth.items() if s not in runtime} == ours
    assert os.path.isdir("/etc/systemd/system") == bool(ours)


def test_network_mounts_in_the_target_are_never_entered(sandbox: Path) -> None:
    write(sandbox, "etc/supervisor/conf.d/local.conf", "[program:local]\ncommand=/bin/true\n")
    write(sandbox, "srv/nfs/supervisor/remote.conf", "[program:remote]\ncommand=/bin/true\n")
    symlink(sandbox, "etc/supervisor/conf.d/remote.conf", "/srv/nfs/supervisor/remote.conf")
    write(sandbox, "opt/units/remote.service", "[Service]\nExecStart=/bin/true\n")
    symlink(sandbox, "etc/systemd/system/remote.service", "/opt/units/remote.service")
    write(sandbox, "etc/systemd/system/local.service", "[Service]\nExecStart=/bin/true\n")
    real = os.path.realpath(sandbox)
    write(sandbox, "proc/self/mountinfo",
          f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
          f"50 1 0:60 / {real}/srv/nfs rw - nfs4 server:/export rw,vers=4.2\n"
          f"51 1 0:61 / {real}/opt/units rw - fuse.sshfs me@host:/units rw\n")
    info = services.collect(SystemRoots.sandbox(sandbox))
    assert [p.name for p in info.supervisor_programs] == ["local"]
    units = {u.name: u.state for u in info.systemd_units}
    assert units["local.service"] == "static"
    assert units["remote.service"] == "bad"  # listed by its link, its file never read
