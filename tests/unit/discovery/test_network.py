"""Network collector inside a private network namespace the test builds with ip(8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oseprovd.discovery.collectors import network
from oseprovd.discovery.roots import SystemRoots
from tests.harness.components import require_root
from tests.unit.discovery.helpers import require_tool, steady, write

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


def _ip_json(ns: list[str], *args: str) -> Any:
    out = subprocess.run(["ip", *ns, "-j", *args], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    return json.loads(out) if out.strip() else []


def ip_truth(netns: str | None = None) -> dict[str, Any]:
    """What iproute2 reads from the kernel, in the collector's terms: links, addresses
    and the unicast routes outside the local table (ip -j; host routes get their /32
    or /128 back, which `ip` leaves out)."""
    ns = ["-n", netns] if netns else []
    links = {
        x["ifname"]: (x["ifindex"], x["mtu"], x.get("master"), x.get("address"),
                      x.get("operstate"), "UP" in x.get("flags", []),
                      x.get("linkinfo", {}).get("info_kind"))
        for x in _ip_json(ns, "-d", "link", "show")}
    family = {"inet": "ipv4", "inet6": "ipv6"}
    addresses = {(x["ifname"], a["local"], a["prefixlen"], family[a["family"]])
                 for x in _ip_json(ns, "addr", "show") for a in x.get("addr_info", [])}
    routes = set()
    for fam, flag, full in (("ipv4", "-4", 32), ("ipv6", "-6", 128)):
        for r in _ip_json(ns, flag, "route", "show", "table", "all"):
            if r.get("type", "unicast") != "unicast" or r.get("table") == "local":
                continue
            dst = r["dst"] if r["dst"] == "default" or "/" in r["dst"] else \
                f"{r['dst']}/{full}"
            routes.add((fam, dst, r.get("gateway"), r.get("dev"), r.get("metric")))
    return {"links": links, "addresses": addresses, "routes": routes}


def ours_in_truth_terms(info: network.NetworkInfo) -> dict[str, Any]:
    return {
        "links": {link.name: (link.index, link.mtu, link.master, link.mac, link.operstate,
                              link.up, link.kind) for link in info.links},
        "addresses": {(link.name, a.address, a.prefixlen, a.family)
                      for link in info.links for a in link.addresses},
        "routes": {(r.family, r.destination, r.gateway, r.device, r.metric)
                   for r in info.routes},
    }


def assert_matches_ip(truth: dict[str, Any], ours: dict[str, Any]) -> None:
    assert ours["addresses"] == truth["addresses"]
    assert ours["routes"] == truth["routes"]
    assert set(ours["links"]) == set(truth["links"])
    for name, (index, mtu, master, mac, oper, up, kind) in truth["links"].items():
        got = ours["links"][name]
        assert got[:6] == (index, mtu, master, mac, oper, up), name
        if kind and kind != "tun":  # tun/tap: the collector names which of the two
            assert got[6] == kind, name


def test_everything_in_a_private_namespace_matches_ip_json(netns: str) -> None:
    ns = ["-n", netns]
    _ip(*ns, "link", "add", "br1", "type", "bridge")
    _ip(*ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    _ip(*ns, "link", "set", "e1", "master", "br1")
    _ip(*ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    for dev in ("lo", "br1", "e0", "e1", "d0", "d1"):
        _ip(*ns, "link", "set", dev, "up")
    _ip(*ns, "addr", "add", "10.7.0.1/24", "dev", "br1")
    _ip(*ns, "addr", "add", "10.8.0.5/16", "dev", "d0")
    _ip(*ns, "addr", "add", "fd42::1/64", "dev", "d0", "nodad")
    _ip(*ns, "route", "add", "default", "via", "10.7.0.254", "dev", "br1")
    _ip(*ns, "route", "add", "192.0.2.77", "via", "10.8.0.9", "dev", "d0", "metric", "3")
    _ip(*ns, "route", "add", "198.51.100.0/24", "dev", "d0", "table", "100")
    _ip(*ns, "route", "add", "fd99::/48", "via", "fd42::9", "dev", "d0")
    _ip(*ns, "neigh", "add", "10.8.0.9", "lladdr", "02:00:00:00:00:09", "dev", "d0",
        "nud", "permanent")
    info = _collect_in(netns)
    assert_matches_ip(ip_truth(netns), ours_in_truth_terms(info))
    assert ("10.8.0.9", "d0", "02:00:00:00:00:09", "permanent") in {
        (n.address, n.device, n.mac, n.state) for n in info.neighbours}
    assert ("ipv4", "198.51.100.0/24", None, "d0", None) in ours_in_truth_terms(info)["routes"]
    assert next(r for r in info.routes if r.destination == "198.51.100.0/24").table == 100


def test_live_system_matches_ip_json() -> None:
    require_tool("ip")
    truth, info = steady(ip_truth, lambda: network.collect(SystemRoots()))
    assert_matches_ip(truth, ours_in_truth_terms(info))
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"], check=True,
                                       capture_output=True, text=True, timeout=30).stdout)
    assert {(r.get("gateway"), r.get("dev")) for r in routes} == {
        (g.gateway, g.device) for g in info.default_gateways if g.family == "ipv4"}


def test_the_collector_needs_no_netlink_library() -> None:
    """The resident daemon must not pay for pyroute2 (6-11 MiB) to read four dumps."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE + "; print(); print('pyroute2' in sys.modules)"],
        check=True, capture_output=True, text=True, timeout=60, cwd=WORKTREE)
    assert out.stdout.splitlines()[-1] == "False"


def test_dns_through_resolved_stub(sandbox: Path) -> None:
    write(sandbox, "run/systemd/resolve/resolv.conf", "nameserver 192.0.2.53\n")
    write(sandbox, "etc/resolv.conf", "# managed\nnameserver 127.0.0.53\n"
          "options edns0\nsearch corp.example lab.example\n")
    dns = network.dns_config(SystemRoots.sandbox(sandbox))
    assert dns.nameservers == ["127.0.0.53"] and dns.via_resolved
    assert dns.upstream == ["192.0.2.53"] and dns.search == ["corp.example", "lab.example"]
