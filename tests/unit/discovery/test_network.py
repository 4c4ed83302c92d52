"""Network collector inside a private network namespace the test builds with ip(8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd.discovery.collectors import network
from oseprovd.discovery.roots import SystemRoots
from tests.harness.components import require_root
from tests.unit.discovery.helpers import require_tool, write

WORKTREE = Path(__file__).resolve().parents[3]
PROBE = ("import sys; from oseprovd.discovery.collectors import network; "
         "from oseprovd.discovery.roots import SystemRoots; "
         "sys.stdout.write(network.collect(SystemRoots()).model_dump_json())")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _collect_in(netns: str) -> network.NetworkInfo:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE],
                         check=True, capture_output=True, text=True, timeout=60, cwd=WORKTREE)
    return network.NetworkInfo.model_validate(json.loads(out.stdout))


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("ip")
    require_root("creating a network namespace")
    name = f"ose-disc-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True,
                       timeout=30)


def test_bridge_veth_vlan_topology_in_private_namespace(netns: str) -> None:
    ns = ["-n", netns]
    _ip(*ns, "link", "add", "br0", "type", "bridge")
    _ip(*ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    _ip(*ns, "link", "set", "v1", "master", "br0")
    _ip(*ns, "link", "add", "mv0", "link", "v0", "type", "macvlan", "mode", "bridge")
    _ip(*ns, "tuntap", "add", "dev", "tap9", "mode", "tap")
    for dev in ("lo", "br0", "v0", "v1", "mv0"):
        _ip(*ns, "link", "set", dev, "up")
    _ip(*ns, "addr", "add", "10.99.0.1/24", "dev", "br0")
    _ip(*ns, "addr", "add", "10.42.0.1/24", "dev", "mv0")
    _ip(*ns, "route", "add", "default", "via", "10.99.0.254", "dev", "br0")
    _ip(*ns, "route", "add", "172.16.0.0/16", "via", "10.42.0.9", "dev", "mv0", "metric", "7")
    info = _collect_in(netns)
    links = {link.name: link for link in info.links}
    assert set(links) == {"lo", "br0", "v0", "v1", "mv0", "tap9"}
    assert (links["br0"].kind, links["v0"].kind, links["v1"].kind) == ("bridge", "veth", "veth")
    assert (links["mv0"].kind, links["mv0"].parent) == ("macvlan", "v0")
    assert links["tap9"].kind == "tap" and links["lo"].kind == "loopback"
    assert links["v1"].master == "br0" and links["v0"].master is None
    assert {links["v0"].parent, links["v1"].parent} == {"v1", "v0"}
    assert [(a.address, a.prefixlen) for a in links["br0"].addresses
            if a.family == "ipv4"] == [("10.99.0.1", 24)]
    assert [(g.gateway, g.device) for g in info.default_gateways] == [("10.99.0.254", "br0")]
    r172 = next(r for r in info.routes if r.destination == "172.16.0.0/16")
    assert (r172.gateway, r172.device, r172.metric) == ("10.42.0.9", "mv0", 7)
    edges = {(e.source, e.target, e.relation) for e in info.topology}
    assert {("v1", "br0", "port-of"), ("mv0", "v0", "macvlan-of"), ("v0", "v1", "peer-of"),
            ("route:ipv4:default", "gateway:10.99.0.254", "next-hop"),
            ("gateway:10.99.0.254", "br0", "gateway-on")} <= edges


def test_vlan_in_private_namespace(netns: str) -> None:
    ns = ["-n", netns]
    _ip(*ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    try:
        _ip(*ns, "link", "add", "link", "v0", "name", "v0.42", "type", "vlan", "id", "42")
    except subprocess.CalledProcessError as exc:
        # A kernel feature (8021q), not a tool the test could install.
        pytest.skip(f"this kernel cannot create VLANs: {exc.stderr!r}")
    info = _collect_in(netns)
    vlan = next(link for link in info.links if link.name == "v0.42")
    assert (vlan.kind, vlan.vlan_id, vlan.parent) == ("vlan", 42, "v0")
    assert ("v0.42", "v0", "vlan-of") in {(e.source, e.target, e.relation)
                                          for e in info.topology}


def test_live_links_match_ip_json() -> None:
    require_tool("ip")
    truth = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show"], check=True,
                                      capture_output=True, text=True, timeout=30).stdout)
    info = network.collect(SystemRoots())
    ours = {link.name: link for link in info.links}
    assert set(ours) == {x["ifname"] for x in truth}
    for x in truth:
        link = ours[x["ifname"]]
        assert link.index == x["ifindex"] and link.mtu == x["mtu"]
        assert link.master == x.get("master")
        kind = x.get("linkinfo", {}).get("info_kind")
        if kind and kind != "tun":
            assert link.kind == kind
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"], check=True,
                                       capture_output=True, text=True, timeout=30).stdout)
    assert {(r.get("gateway"), r.get("dev")) for r in routes} == {
        (g.gateway, g.device) for g in info.default_gateways if g.family == "ipv4"}


def test_dns_through_resolved_stub(sandbox: Path) -> None:
    write(sandbox, "run/systemd/resolve/resolv.conf", "nameserver 192.0.2.53\n")
    write(sandbox, "etc/resolv.conf", "# managed\nnameserver 127.0.0.53\n"
          "options edns0\nsearch corp.example lab.example\n")
    dns = network.dns_config(SystemRoots.sandbox(sandbox))
    assert dns.nameservers == ["127.0.0.53"] and dns.via_resolved
    assert dns.upstream == ["192.0.2.53"] and dns.search == ["corp.example", "lab.example"]
