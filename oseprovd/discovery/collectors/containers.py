"""Container runtimes: installed (binaries, packages), running (processes), their
sockets and versions; and whether this host is itself a container."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from oseprovd.discovery import probe
from oseprovd.discovery.collectors import packages, virt
from oseprovd.discovery.fsread import TargetReader, target_reader
from oseprovd.discovery.roots import SystemRoots


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    binaries: tuple[str, ...]
    sockets: tuple[str, ...]
    processes: tuple[str, ...]
    packages: tuple[str, ...]


RUNTIMES: tuple[RuntimeSpec, ...] = (
    RuntimeSpec("docker", ("/usr/bin/dockerd", "/usr/bin/docker", "/usr/local/bin/docker"),
                ("/run/docker.sock",), ("dockerd",), ("docker-ce", "docker.io")),
    RuntimeSpec("podman", ("/usr/bin/podman",), ("/run/podman/podman.sock",),
                ("podman", "conmon"), ("podman",)),
    RuntimeSpec("containerd", ("/usr/bin/containerd", "/usr/local/bin/containerd"),
                ("/run/containerd/containerd.sock",), ("containerd",),
                ("containerd.io", "containerd")),
    RuntimeSpec("cri-o", ("/usr/bin/crio",), ("/run/crio/crio.sock",), ("crio",),
                ("cri-o",)),
    RuntimeSpec("lxc", ("/usr/bin/lxc-start",), (), ("lxc-start",), ("lxc",)),
    RuntimeSpec("lxd", ("/snap/bin/lxd", "/usr/bin/lxd", "/usr/sbin/lxd"),
                ("/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket"),
                ("lxd",), ("lxd",)),
    RuntimeSpec("incus", ("/usr/bin/incus", "/usr/sbin/incusd", "/usr/libexec/incus/incusd"),
                ("/var/lib/incus/unix.socket",), ("incusd",), ("incus",)),
    RuntimeSpec("kubelet", ("/usr/bin/kubelet", "/usr/local/bin/kubelet"), (), ("kubelet",),
                ("kubelet",)),
    RuntimeSpec("k3s", ("/usr/local/bin/k3s", "/usr/bin/k3s"),
                ("/run/k3s/containerd/containerd.sock",), ("k3s-server", "k3s-agent", "k3s"),
                ()),
    RuntimeSpec("runc", ("/usr/bin/runc", "/usr/sbin/runc", "/usr/local/sbin/runc"), (), (),
                ("runc",)),
)


class ContainerRuntime(BaseModel):
    name: str
    installed: bool
    binary: str | None = None
    version: str | None = None
    version_source: str | None = None  # binary (--version) or package (dpkg)
    package: str | None = None
    running: bool = False
    pids: list[int] = []
    sockets: list[str] = []


class ContainersInfo(BaseModel):
    runtimes: list[ContainerRuntime] = []  # only those found installed or running
    host_is_container: bool = False
    host_container_kind: str | None = None


def _runtime(spec: RuntimeSpec, roots: SystemRoots, target: TargetReader,
             procs: dict[str, list[int]], installed: dict[str, str]) -> ContainerRuntime:
    binary = probe.first_present(target, spec.binaries)
    pids = sorted(p for name in spec.processes for p in procs.get(name, []))
    package = next((p for p in spec.packages if p in installed), None)
    version = probe.program_version(roots, binary) if binary else None
    source = "binary" if version else None
    if version is None and package is not None:
        version, source = installed[package], "package"
    return ContainerRuntime(
        name=spec.name, installed=bool(binary or package), binary=binary, version=version,
        version_source=source, package=package, running=bool(pids), pids=pids,
        sockets=[s for s in spec.sockets if probe.is_socket(roots, s)])


def installed_versions(roots: SystemRoots) -> dict[str, str]:
    """package name -> version of installed dpkg packages."""
    return {p.name: p.version or "" for p in packages.collect(roots).packages
            if p.state == "installed"}


def collect(roots: SystemRoots) -> ContainersInfo:
    target = target_reader(roots)
    procs = probe.process_names(roots.proc)
    installed = installed_versions(roots)
    found = [_runtime(spec, roots, target, procs, installed) for spec in RUNTIMES]
    kind = virt.collect(roots).container
    return ContainersInfo(runtimes=[r for r in found if r.installed or r.running or r.sockets],
                          host_is_container=kind is not None, host_container_kind=kind)
