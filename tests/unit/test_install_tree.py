"""`make install` puts exactly the expected files, with the expected modes and contents,
into FHS places, and what it installs works with the real dbus-daemon."""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import stat
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from oseprovd.bus.names import BUS_NAME, ROOT_PATH, SHIPPED_ACTIONS
from tests.unit.osint_tools import (
    NOBODY,
    REPO,
    copy_sources,
    dbus_send,
    make,
    require_tool,
    system_bus,
)

# Installed path -> source file, for PREFIX=/usr SYSCONFDIR=/etc.
DATA_FILES = {
    "usr/share/dbus-1/system.d/org.ose.Provisioning1.conf": "dbus/org.ose.Provisioning1.conf",
    "usr/share/dbus-1/system-services/org.ose.Provisioning1.service":
        "dbus/org.ose.Provisioning1.service",
    "usr/share/polkit-1/actions/org.ose.provisioning.policy":
        "polkit/org.ose.provisioning.policy",
    "usr/lib/systemd/system/oseprovd.service": "systemd/oseprovd.service",
    "usr/lib/systemd/system/oseprovd-tuning.service": "systemd/oseprovd-tuning.service",
    "usr/lib/tmpfiles.d/oseprovd.conf": "systemd/tmpfiles.d/oseprovd.conf",
    "usr/share/man/man8/oseprovd.8": "man/oseprovd.8",
    "usr/share/man/man1/osectl.1": "man/osectl.1",
    "etc/ose/oseprovd.toml": "etc/oseprovd.toml",
}
DATA_FILES_BY_SRC = {src: rel for rel, src in DATA_FILES.items()}
COMPLETIONS = (
    "usr/share/bash-completion/completions/osectl",
    "usr/share/zsh/vendor-completions/_osectl",
    "usr/share/fish/vendor_completions.d/osectl.fish",
)
ALWAYS_DIRS = ("usr/share/dbus-1/interfaces",)

# What the example configuration must say; the defaults of the lead's settings model.
CONFIG_DEFAULTS = {
    "bus": "system",
    "root": "/",
    "proc_root": "/proc",
    "sys_root": "/sys",
    "state_dir": "/var/lib/oseprovd",
    "log_level": "info",
    "snapshot_timer_seconds": 3600,
    "limits": {
        "max_string_bytes": 65536,
        "max_array_length": 10000,
        "max_depth": 16,
        "max_pending_calls_per_sender": 16,
        "rate_per_uid_per_second": 5,
        "rate_burst": 20,
        "polkit_timeout_seconds": 10,
        "polkit_interactive_timeout_seconds": 300,
        "finished_job_linger_seconds": 600,
        "max_finished_job_objects": 100,
    },
    "discovery": {"cache_ttl_seconds": 300, "keep_reports": 50},
}


def cli_has_completion(repo: Path = REPO) -> bool:
    """Whether osectl.main is a click CLI yet (before the lead adds it, it prints nothing)."""
    out = subprocess.run([sys.executable, "-m", "osectl.main"], cwd=repo, capture_output=True,
                         text=True, timeout=60, check=True,
                         env={**os.environ, "_OSECTL_COMPLETE": "bash_source"})
    return bool(out.stdout.strip())


def expected_tree() -> tuple[dict[str, Path], set[str]]:
    files = {rel: REPO / src for rel, src in DATA_FILES.items()}
    for xml in sorted((REPO / "dbus" / "interfaces").glob("org.ose.*.xml")):
        files[f"usr/share/dbus-1/interfaces/{xml.name}"] = xml
    if cli_has_completion():
        files.update(dict.fromkeys(COMPLETIONS, Path()))
    dirs = set(ALWAYS_DIRS)
    for rel in [*files, *ALWAYS_DIRS]:
        parent = Path(rel).parent
        while parent != Path("."):
            dirs.add(str(parent))
            parent = parent.parent
    return files, dirs


def actual_tree(root: Path) -> dict[str, os.stat_result]:
    return {str(p.relative_to(root)): p.lstat() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("install")
    destdir = base / "root"
    result = make("install", build=base / "build", DESTDIR=str(destdir))
    assert result.returncode == 0, result.stdout + result.stderr
    return destdir


def test_install_puts_exactly_the_expected_tree(installed: Path) -> None:
    files, dirs = expected_tree()
    tree = actual_tree(installed)
    assert set(tree) == set(files) | dirs
    for rel, st in tree.items():
        if rel in dirs:
            assert stat.S_ISDIR(st.st_mode), rel
            assert stat.S_IMODE(st.st_mode) == 0o755, f"{rel}: {oct(st.st_mode)}"
        else:
            assert stat.S_ISREG(st.st_mode), rel
            assert stat.S_IMODE(st.st_mode) == 0o644, f"{rel}: {oct(st.st_mode)}"


def test_installed_files_are_the_sources(installed: Path) -> None:
    files, _ = expected_tree()
    for rel, src in files.items():
        if rel in COMPLETIONS:
            continue
        assert (installed / rel).read_bytes() == src.read_bytes(), rel


def test_another_prefix_moves_files_and_rewrites_execstart(tmp_path: Path) -> None:
    destdir = tmp_path / "root"
    result = make("install", build=tmp_path / "build", DESTDIR=str(destdir),
                  PREFIX="/usr/local", SYSCONFDIR="/usr/local/etc")
    assert result.returncode == 0, result.stdout + result.stderr
    unit = (destdir / "usr/local/lib/systemd/system/oseprovd.service").read_text()
    assert "\nExecStart=/usr/local/bin/oseprovd\n" in unit
    assert (destdir / "usr/local/etc/ose/oseprovd.toml").is_file()
    assert (destdir / "usr/local/share/dbus-1/system.d/org.ose.Provisioning1.conf").is_file()
    assert not (destdir / "usr/lib").exists()
    assert not (destdir / "etc").exists()


def test_install_keeps_an_edited_config(tmp_path: Path) -> None:
    conf = tmp_path / "root/etc/ose/oseprovd.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('log_level = "debug"\n')
    result = make("install", build=tmp_path / "build", DESTDIR=str(tmp_path / "root"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert conf.read_text() == 'log_level = "debug"\n'


def test_installed_xml_files_parse(installed: Path) -> None:
    xml_files = [
        installed / DATA_FILES_BY_SRC["dbus/org.ose.Provisioning1.conf"],
        installed / DATA_FILES_BY_SRC["polkit/org.ose.provisioning.policy"],
        *(installed / "usr/share/dbus-1/interfaces").iterdir(),
    ]
    for path in xml_files:
        ET.parse(path)  # raises on malformed XML


def test_bus_policy_lets_only_root_own_the_name(installed: Path) -> None:
    tree = ET.parse(installed / DATA_FILES_BY_SRC["dbus/org.ose.Provisioning1.conf"])
    owners = []
    for policy in tree.getroot().iter("policy"):
        for rule in policy:
            if rule.tag == "allow" and ({"own", "own_prefix"} & set(rule.attrib)):
                owners.append((dict(policy.attrib), dict(rule.attrib)))
    assert owners == [({"user": "root"}, {"own": BUS_NAME})]
    default = [p for p in tree.getroot().iter("policy") if p.get("context") == "default"]
    assert len(default) == 1
    allowed = [dict(r.attrib) for r in default[0] if r.tag == "allow"]
    assert {"send_destination": BUS_NAME} in allowed



async def _own_name(address: str, ready: asyncio.Event, stop: asyncio.Event) -> int:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.request_name(BUS_NAME)
        ready.set()
        await stop.wait()
        return int(reply.value)
    finally:
        bus.disconnect()


async def _ping_as_nobody_while_root_owns(address: str) -> tuple[int, str, str]:
    ready, stop = asyncio.Event(), asyncio.Event()
    owner = asyncio.create_task(_own_name(address, ready, stop))
    await asyncio.wait_for(ready.wait(), 10)
    ping = await asyncio.to_thread(dbus_send, address, BUS_NAME, ROOT_PATH,
                                   "org.freedesktop.DBus.Peer.Ping", uid=NOBODY)
    stop.set()
    reply = await owner
    return reply, ping.stdout, ping.stderr


def test_live_bus_policy_root_owns_nobody_calls(installed: Path) -> None:
    policy_dir = installed / "usr/share/dbus-1/system.d"
    with system_bus(policy_dir=policy_dir) as address:
        request = ("/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName",
                   f"string:{BUS_NAME}", "uint32:0")
        denied = dbus_send(address, "org.freedesktop.DBus", *request, uid=NOBODY)
        assert "org.freedesktop.DBus.Error.AccessDenied" in denied.stderr
        reply, out, err = asyncio.run(_ping_as_nobody_while_root_owns(address))
        assert reply == 1  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
        assert "method return" in out, err


def test_live_bus_without_the_policy_denies_both() -> None:
    """The controls: with the system bus's default policy alone root may not own the
    name, and with only ownership allowed nobody may not call it; so the test above
    measures our file."""
    with tempfile.TemporaryDirectory() as empty, system_bus(policy_dir=Path(empty)) as address:
        own = dbus_send(address, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.RequestName", f"string:{BUS_NAME}", "uint32:0")
        assert "org.freedesktop.DBus.Error.AccessDenied" in own.stderr
    only_own = f'<policy user="root"><allow own="{BUS_NAME}"/></policy>'
    with system_bus(policy_dir=None, extra=only_own) as address:
        reply, out, err = asyncio.run(_ping_as_nobody_while_root_owns(address))
        assert reply == 1
        assert "org.freedesktop.DBus.Error.AccessDenied" in err, out


def test_activation_file_names_the_unit(installed: Path) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(installed / "usr/share/dbus-1/system-services/org.ose.Provisioning1.service")
    assert parser.sections() == ["D-BUS Service"]
    assert dict(parser["D-BUS Service"]) == {
        "Name": BUS_NAME, "Exec": "/bin/false", "User": "root",
        "SystemdService": "oseprovd.service",
    }
    unit = (installed / "usr/lib/systemd/system/oseprovd.service").read_text()
    assert f"\nBusName={BUS_NAME}\n" in unit
    assert "\nType=dbus\n" in unit


async def _activation_request(address: str) -> str:
    """Play systemd on the bus and return the unit dbus-daemon asks it to start."""
    systemd = await MessageBus(bus_address=address).connect()
    client = await MessageBus(bus_address=address).connect()
    units: asyncio.Queue[str] = asyncio.Queue()

    def on_message(msg: Message) -> None:
        if (msg.message_type == MessageType.SIGNAL
                and msg.interface == "org.freedesktop.systemd1.Activator"
                and msg.member == "ActivationRequest"):
            units.put_nowait(msg.body[0])

    systemd.add_message_handler(on_message)
    try:
        await systemd.request_name("org.freedesktop.systemd1")
        start = asyncio.create_task(client.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="StartServiceByName",
            signature="su", body=[BUS_NAME, 0])))
        unit = await asyncio.wait_for(units.get(), 10)
        start.cancel()
        return unit
    finally:
        client.disconnect()
        systemd.disconnect()


def test_dbus_daemon_activates_through_systemd(installed: Path) -> None:
    """The real dbus-daemon reads the activation file and asks systemd for our unit."""
    share = installed / "usr/share/dbus-1"
    fake_systemd = '<policy user="root"><allow own="org.freedesktop.systemd1"/></policy>'
    with system_bus(policy_dir=share / "system.d",
                    service_dir=share / "system-services", extra=fake_systemd,
                    systemd_activation=True) as address:
        names = dbus_send(address, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus.ListActivatableNames")
        assert f'string "{BUS_NAME}"' in names.stdout
        assert asyncio.run(_activation_request(address)) == "oseprovd.service"


def test_polkit_policy_declares_exactly_the_shipped_actions(installed: Path) -> None:
    root = ET.parse(installed / "usr/share/polkit-1/actions/org.ose.provisioning.policy")
    actions = root.getroot().findall("action")
    ids = [a.get("id") for a in actions]
    assert sorted(ids) == sorted(SHIPPED_ACTIONS)
    assert len(ids) == len(set(ids))
    answers = {"no", "yes", "auth_self", "auth_admin", "auth_self_keep", "auth_admin_keep"}
    for action in actions:
        assert (action.findtext("description") or "").strip(), action.get("id")
        assert (action.findtext("message") or "").strip(), action.get("id")
        for key in ("allow_any", "allow_inactive", "allow_active"):
            assert action.findtext(f"defaults/{key}") in answers, (action.get("id"), key)


def test_example_config_documents_every_setting_with_its_default(installed: Path) -> None:
    text = (installed / "etc/ose/oseprovd.toml").read_text()
    assert tomllib.loads(text) == {"limits": {}, "discovery": {}}  # everything commented out
    uncommented = re.sub(r"(?m)^#(\w+ = )", r"\1", text)
    assert tomllib.loads(uncommented) == CONFIG_DEFAULTS


def test_example_config_matches_the_settings_model() -> None:
    config = pytest.importorskip("oseprovd.config")
    defaults = config.Settings().model_dump(mode="json")
    defaults.pop("test_interface", None)  # test suite only, not documented for admins
    assert defaults == CONFIG_DEFAULTS


def test_man_pages_list_installed_files(installed: Path) -> None:
    page = (REPO / "man/oseprovd.8").read_text()
    files_section = page.split(".SH FILES", 1)[1].split(".SH ", 1)[0]
    paths = [line.split()[1].replace("\\-", "-") for line in files_section.splitlines()
             if line.startswith(".I /usr/")]
    assert len(paths) >= 5
    for path in paths:
        assert (installed / path.lstrip("/")).exists(), path


def test_man_pages_render_without_warnings() -> None:
    man = require_tool("man")
    groff = require_tool("groff")
    for page in ("man/oseprovd.8", "man/osectl.1"):
        checked = subprocess.run([groff, "-man", "-ww", "-z", page], cwd=REPO,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert checked.returncode == 0 and checked.stderr == "", (page, checked.stderr)
        shown = subprocess.run([man, "--warnings", "-l", page], cwd=REPO, capture_output=True,
                               text=True, timeout=60, check=False,
                               env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
        assert shown.returncode == 0 and shown.stderr == "", (page, shown.stderr)
        assert "SEE ALSO" in shown.stdout


def test_osectl_page_documents_the_exit_codes() -> None:
    page = (REPO / "man/osectl.1").read_text()
    section = page.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    assert re.findall(r"(?m)^\.B (\d)$", section) == ["0", "1", "2", "3", "4", "5"]


MINIMAL_CLI = '''\
import click


@click.group()
def cli() -> None:
    """osectl stand-in for the completion test."""


@cli.command()
def status() -> None:
    pass


def main() -> None:
    cli(prog_name="osectl")


if __name__ == "__main__":
    main()
'''


def test_completions_are_generated_from_a_click_cli(tmp_path: Path) -> None:
    bash = require_tool("bash")
    repo = copy_sources(tmp_path / "src")
    (repo / "osectl/main.py").write_text(MINIMAL_CLI)
    destdir = tmp_path / "root"
    result = make("install", repo=repo, build=tmp_path / "build", DESTDIR=str(destdir))
    assert result.returncode == 0, result.stdout + result.stderr
    for rel in COMPLETIONS:
        path = destdir / rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert "_OSECTL_COMPLETE" in path.read_text(), rel
    registered = subprocess.run(
        [bash, "--norc", "-c", f"source {destdir / COMPLETIONS[0]} && complete -p osectl"],
        capture_output=True, text=True, timeout=30, check=False)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.rstrip().endswith(" osectl")


def test_completions_refuse_a_cli_that_does_not_complete(tmp_path: Path) -> None:
    repo = copy_sources(tmp_path / "src")
    # prog_name left to click: the variable it listens to is not _OSECTL_COMPLETE, so it
    # prints its usage instead of a script.
    (repo / "osectl/main.py").write_text(MINIMAL_CLI.replace('prog_name="osectl"', ""))
    result = make("completions", repo=repo, build=tmp_path / "build")
    assert result.returncode != 0
    assert "did not print a bash completion script" in result.stderr


@pytest.mark.slow
def test_install_python_puts_the_daemon_where_execstart_looks(tmp_path: Path) -> None:
    """INSTALL_PYTHON=1 runs pip; the unit's ExecStart= must name the installed script.
    With Debian's python3 the package must land on its default sys.path."""
    system_python = "/usr/bin/python3"
    has_system_pip = subprocess.run([system_python, "-m", "pip", "--version"],
                                    capture_output=True, check=False).returncode == 0
    python = system_python if has_system_pip else sys.executable
    destdir = tmp_path / "root"
    repo = copy_sources(tmp_path / "src")  # pip builds in the tree: not in ours
    result = make("install", repo=repo, build=tmp_path / "build", DESTDIR=str(destdir),
                  INSTALL_PYTHON="1", python=python, CLI_PYTHON=sys.executable,
                  umask=0o022)
    assert result.returncode == 0, result.stdout + result.stderr
    unit = (destdir / "usr/lib/systemd/system/oseprovd.service").read_text()
    execstart = re.search(r"(?m)^ExecStart=(\S+)", unit)
    assert execstart is not None
    script = destdir / execstart.group(1).lstrip("/")
    assert script.is_file() and os.access(script, os.X_OK)
    assert script.read_text().splitlines()[0] == f"#!{python}"
    init = next(destdir.rglob("oseprovd/__init__.py"))
    site = init.parent.parent
    if python == system_python:
        paths = subprocess.run([system_python, "-c", "import sys; print('\\n'.join(sys.path))"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert "/" + str(site.relative_to(destdir)) in paths
