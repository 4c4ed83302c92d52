"""Operating system: os-release, kernel, init system, boot mode, hostname, time zone."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from oseprovd.discovery.fsread import TargetReader, read_attr, read_bytes, target_reader
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots

EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


class KernelInfo(BaseModel):
    name: str | None = None  # Linux
    release: str | None = None
    version: str | None = None
    architecture: str | None = None
    command_line: str | None = None


class OsInfo(BaseModel):
    id: str | None = None
    id_like: list[str] = []
    name: str | None = None
    pretty_name: str | None = None
    version: str | None = None
    version_id: str | None = None
    version_codename: str | None = None
    os_release: dict[str, str] = {}
    kernel: KernelInfo = KernelInfo()
    hostname: str | None = None
    machine_id: str | None = sensitive()
    init_system: str | None = None  # what the target boots: systemd, sysvinit, openrc, runit...
    pid1: str | None = None  # the name of the running pid 1 (a container may run anything)
    systemd_running: bool = False
    boot_mode: Literal["uefi", "bios"] = "bios"
    secure_boot: bool | None = None
    timezone: str | None = None


_ESCAPES = {"\\": "\\", '"': '"', "$": "$", "`": "`"}


def _unquote(value: str) -> str:
    """Shell-style value of os-release (a subset: quotes and the four escapes)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        quote, value = value[0], value[1:-1]
        if quote == "'":
            return value
        out: list[str] = []
        i = 0
        while i < len(value):
            if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in _ESCAPES:
                out.append(value[i + 1])
                i += 2
            else:
                out.append(value[i])
                i += 1
        return "".join(out)
    return value


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.strip().replace("_", "").isalnum():
            values[key.strip()] = _unquote(value.strip())
    return values


def _init_system(target: TargetReader, running: bool, comm: str | None) -> str | None:
    """The init the target boots; systemd counts as running if it left its marker."""
    if running or comm == "systemd":
        return "systemd"
    link = target.readlink("sbin/init") or ""
    for name in ("systemd", "openrc", "runit", "busybox", "sysvinit"):
        if name in link:
            return name
    if target.exists("sbin/openrc"):
        return "openrc"
    if comm == "init" or target.exists("etc/inittab"):
        return "sysvinit"
    return None


def _secure_boot(roots: SystemRoots) -> bool | None:
    data = read_bytes(roots.sys / "firmware" / "efi" / "efivars" / f"SecureBoot-{EFI_GLOBAL}", 16)
    if not data or len(data) < 5:
        return None
    return data[4] == 1  # 4 bytes of attributes, then the value


def _timezone(target: TargetReader) -> str | None:
    link = target.readlink("etc/localtime")
    if link and "zoneinfo/" in link:
        return link.split("zoneinfo/", 1)[1]
    text = target.read_text("etc/timezone", 256)
    return text.strip() or None if text else None


def collect(roots: SystemRoots) -> OsInfo:
    target = target_reader(roots)
    text = target.read_text("etc/os-release", 64 * 1024)
    if text is None:
        text = target.read_text("usr/lib/os-release", 64 * 1024) or ""
    rel = parse_os_release(text)
    kernel_dir = roots.proc / "sys" / "kernel"
    # sd_booted(): systemd creates this directory early at boot.
    running = (roots.run / "systemd" / "system").is_dir()
    comm = read_attr(roots.proc / "1" / "comm")
    efi = (roots.sys / "firmware" / "efi").is_dir()
    machine_id = (target.read_text("etc/machine-id", 256) or "").strip() or None
    return OsInfo(
        id=rel.get("ID"), id_like=rel.get("ID_LIKE", "").split(), name=rel.get("NAME"),
        pretty_name=rel.get("PRETTY_NAME"), version=rel.get("VERSION"),
        version_id=rel.get("VERSION_ID"), version_codename=rel.get("VERSION_CODENAME"),
        os_release=rel,
        kernel=KernelInfo(name=read_attr(kernel_dir / "ostype"),
                          release=read_attr(kernel_dir / "osrelease"),
                          version=read_attr(kernel_dir / "version"),
                          architecture=read_attr(kernel_dir / "arch"),
                          command_line=read_attr(roots.proc / "cmdline")),
        hostname=read_attr(kernel_dir / "hostname"), machine_id=machine_id,
        init_system=_init_system(target, running, comm), pid1=comm, systemd_running=running,
        boot_mode="uefi" if efi else "bios", secure_boot=_secure_boot(roots) if efi else None,
        timezone=_timezone(target),
    )
