"""Is this a virtual machine or a container, and which kind: local evidence only.

Names follow systemd-detect-virt (kvm, qemu, vmware, oracle, xen, microsoft, amazon,
google, docker, podman, lxc, wsl, ...) so callers can compare the two.
"""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery.collectors import dmi
from oseprovd.discovery.fsread import TargetReader, read_attr, read_bytes, read_text, target_reader
from oseprovd.discovery.roots import SystemRoots

# (substring in a DMI vendor/product field, lower case) -> systemd-detect-virt name.
_DMI_VM = (
    ("amazon ec2", "amazon"), ("google", "google"), ("kvm", "kvm"), ("qemu", "qemu"),
    ("vmware", "vmware"), ("innotek gmbh", "oracle"), ("virtualbox", "oracle"),
    ("xen", "xen"), ("bochs", "bochs"), ("parallels", "parallels"), ("bhyve", "bhyve"),
    ("apple virtualization", "apple"), ("openstack", "kvm"), ("droplet", "kvm"),
    ("alibaba cloud ecs", "kvm"), ("hetzner", "kvm"),
)

_CGROUP_MARKERS = (("kubepods", "kubernetes"), ("libpod", "podman"), ("docker", "docker"),
                   ("lxc.payload", "lxc"), ("/lxc/", "lxc"), ("machine.slice", "systemd-nspawn"))


class Virtualization(BaseModel):
    virtualized: bool = False
    vm: str | None = None  # hypervisor, as systemd-detect-virt --vm names it
    container: str | None = None  # as systemd-detect-virt --container names it
    hypervisor_flag: bool = False
    evidence: list[str] = []


def _vm_from_dmi(info: dmi.DmiInfo, evidence: list[str]) -> str | None:
    fields = {"sys_vendor": info.sys_vendor, "product_name": info.product_name,
              "bios_vendor": info.bios_vendor, "board_vendor": info.board_vendor,
              "product_version": info.product_version, "bios_version": info.bios_version}
    if (info.sys_vendor or "").startswith("Microsoft") and info.product_name == "Virtual Machine":
        evidence.append("dmi: Microsoft Virtual Machine")
        return "microsoft"
    for field, value in fields.items():
        low = (value or "").lower()
        for needle, name in _DMI_VM:
            if needle in low:
                evidence.append(f"dmi {field}: {value}")
                return name
    return None


def _from_markers(roots: SystemRoots, target: TargetReader) -> tuple[str, str] | None:
    marker = read_attr(roots.run / "systemd" / "container")
    if marker:
        return marker, f"run/systemd/container: {marker}"
    environ = read_bytes(roots.proc / "1" / "environ", 1 << 16) or b""
    for item in environ.split(b"\0"):
        if item.startswith(b"container="):
            value = item.split(b"=", 1)[1].decode("utf-8", "replace") or "container-other"
            return value, f"pid 1 environment container={value}"
    if target.exists(".dockerenv"):
        return "docker", "/.dockerenv exists"
    if (roots.run / ".containerenv").exists():
        return "podman", "run/.containerenv exists"
    return None


def _from_kernel(roots: SystemRoots) -> tuple[str, str] | None:
    cgroup = read_text(roots.proc / "1" / "cgroup") or ""
    for needle, name in _CGROUP_MARKERS:
        if needle in cgroup:
            return name, f"pid 1 cgroup mentions {needle}"
    osrelease = (read_attr(roots.proc / "sys" / "kernel" / "osrelease") or "").lower()
    if "microsoft" in osrelease:
        return "wsl", "kernel release mentions Microsoft"
    if (roots.proc / "vz").exists() and not (roots.proc / "bc").exists():
        return "openvz", "proc/vz without proc/bc"
    return None


def _container(roots: SystemRoots, target: TargetReader, evidence: list[str]) -> str | None:
    """Explicit markers first (what systemd itself trusts), then kernel-side hints."""
    found = _from_markers(roots, target) or _from_kernel(roots)
    if found is None:
        return None
    evidence.append(found[1])
    return found[0]


def collect(roots: SystemRoots) -> Virtualization:
    evidence: list[str] = []
    info = dmi.collect(roots)
    vm = _vm_from_dmi(info, evidence)
    hv_type = read_attr(roots.sys / "hypervisor" / "type")
    if vm is None and hv_type:
        evidence.append(f"sys/hypervisor/type: {hv_type}")
        vm = hv_type
    flags_line = next((line for line in (read_text(roots.proc / "cpuinfo", 1 << 22) or "")
                       .splitlines() if line.startswith(("flags", "Features"))), "")
    hv_flag = "hypervisor" in flags_line.split()
    if hv_flag:
        evidence.append("cpuinfo flags: hypervisor")
        if vm is None:
            vm = "vm-other"
    container = _container(roots, target_reader(roots), evidence)
    return Virtualization(virtualized=bool(vm or container), vm=vm, container=container,
                          hypervisor_flag=hv_flag, evidence=evidence)
