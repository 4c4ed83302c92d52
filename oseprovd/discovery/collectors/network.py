"""Network configuration over rtnetlink (the kernel's binary dumps, as `ip` reads them;
see discovery/rtnetlink.py): links, addresses, routes, gateways, neighbours, DNS, and a
topology graph. Reads kernel state only; sends no packets.

Everything here is the network namespace of the reading process.
"""

from __future__ import annotations

import socket
import sys

from pydantic import BaseModel

from oseprovd.discovery import rtnetlink as rt
from oseprovd.discovery.fsread import target_reader
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.rtnetlink import NlMessage, RtNetlink

MAIN_TABLE = 254
LOCAL_TABLE = 255
# rtnetlink route protocols worth naming.
RT_PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 9: "gated",
             11: "zebra", 12: "bird", 16: "dhcp", 186: "bgp", 188: "ospf", 42: "babel"}
NUD = {1: "incomplete", 2: "reachable", 4: "stale", 8: "delay", 16: "probe", 32: "failed",
       64: "noarp", 128: "permanent"}
NUD_NOARP = 64
RTN_UNICAST = 1
IFF_UP = 0x1
ARPHRD_LOOPBACK = 772
RESOLVED_STUB = "127.0.0.53"


class IpAddress(BaseModel):
    address: str
    prefixlen: int
    family: str  # ipv4, ipv6
    scope: str  # global, link, host


class Link(BaseModel):
    name: str
    index: int
    kind: str  # loopback, ethernet, wireless, bridge, bond, vlan, veth, tun, tap, ...
    mac: str | None = sensitive()
    mtu: int | None = None
    up: bool = False
    operstate: str | None = None
    master: str | None = None  # bridge/bond this link is a port of
    parent: str | None = None  # vlan/macvlan lower device, or a veth's peer (same netns)
    vlan_id: int | None = None
    addresses: list[IpAddress] = []


class Route(BaseModel):
    destination: str  # CIDR, 'default' for 0/0
    family: str
    gateway: str | None = None
    device: str | None = None
    table: int = MAIN_TABLE
    protocol: str | None = None
    metric: int | None = None
    source: str | None = None  # preferred source address


class Neighbour(BaseModel):
    address: str
    device: str | None = None
    mac: str | None = sensitive()
    state: str | None = None


class DnsConfig(BaseModel):
    nameservers: list[str] = []
    search: list[str] = []
    via_resolved: bool = False  # resolv.conf points at systemd-resolved's stub
    upstream: list[str] = []  # resolved's own servers, when it is the stub


class TopologyEdge(BaseModel):
    source: str
    target: str
    relation: str  # port-of (bridge/bond), vlan-of, peer-of, route-via, gateway-on


class NetworkInfo(BaseModel):
    links: list[Link] = []
    routes: list[Route] = []
    default_gateways: list[Route] = []
    neighbours: list[Neighbour] = []
    dns: DnsConfig = DnsConfig()
    topology: list[TopologyEdge] = []


def _family(value: int) -> str:
    return "ipv6" if value == socket.AF_INET6 else "ipv4"


def _scope(value: int) -> str:
    return {0: "global", 200: "site", 253: "link", 254: "host"}.get(value, str(value))


def _link_kind(msg: NlMessage, roots: SystemRoots, name: str) -> str:
    info = rt.attrs(msg.raw(rt.IFLA_LINKINFO) or b"")
    kind = info[rt.IFLA_INFO_KIND].split(b"\0", 1)[0].decode() if rt.IFLA_INFO_KIND in info \
        else None
    if kind == "tun":
        data = rt.attrs(info.get(rt.IFLA_INFO_DATA, b""))
        tun_type = data.get(rt.IFLA_TUN_TYPE, b"")[:1]
        return "tap" if tun_type == b"\x02" else "tun"  # IFF_TAP
    if kind:
        return kind
    if msg["ifi_type"] == ARPHRD_LOOPBACK:
        return "loopback"
    sysdir = roots.sys / "class" / "net" / name
    if (sysdir / "wireless").is_dir() or (sysdir / "phy80211").exists():
        return "wireless"
    return "ethernet" if (sysdir / "device").exists() else "other"


def _vlan_id(msg: NlMessage) -> int | None:
    info = rt.attrs(msg.raw(rt.IFLA_LINKINFO) or b"")
    data = rt.attrs(info.get(rt.IFLA_INFO_DATA, b""))
    vid = data.get(rt.IFLA_VLAN_ID)
    return int.from_bytes(vid[:2], sys.byteorder) if vid is not None and len(vid) >= 2 else None


def _operstate(msg: NlMessage) -> str | None:
    raw = msg.raw(rt.IFLA_OPERSTATE)
    if not raw:
        return None
    return rt.OPERSTATES[raw[0]] if raw[0] < len(rt.OPERSTATES) else str(raw[0])


def _links(nl: RtNetlink, roots: SystemRoots) -> list[Link]:
    msgs = list(nl.links())
    names = {m["index"]: m.text(rt.IFLA_IFNAME) for m in msgs}
    links: list[Link] = []
    for m in msgs:
        name = m.text(rt.IFLA_IFNAME) or str(m["index"])
        parent_index = m.u32(rt.IFLA_LINK)
        same_ns = m.raw(rt.IFLA_LINK_NETNSID) is None
        parent = names.get(parent_index) if parent_index and same_ns else None
        master = m.u32(rt.IFLA_MASTER)
        links.append(Link(
            name=name, index=m["index"], kind=_link_kind(m, roots, name),
            mac=m.lladdr(rt.IFLA_ADDRESS), mtu=m.u32(rt.IFLA_MTU),
            up=bool(m["flags"] & IFF_UP), operstate=_operstate(m),
            master=names.get(master) if master else None, vlan_id=_vlan_id(m),
            parent=parent if parent != name else None,
        ))
    return links


def _addresses(nl: RtNetlink) -> dict[int, list[IpAddress]]:
    result: dict[int, list[IpAddress]] = {}
    for a in nl.addresses():
        address = a.address(rt.IFA_LOCAL) or a.address(rt.IFA_ADDRESS)
        if address is None:
            continue
        result.setdefault(a["index"], []).append(IpAddress(
            address=address, prefixlen=a["prefixlen"], family=_family(a["family"]),
            scope=_scope(a["scope"])))
    return result


def _routes(nl: RtNetlink, names: dict[int, str]) -> list[Route]:
    routes: list[Route] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for r in nl.routes(family):
            table = r.u32(rt.RTA_TABLE) or r["table"]
            if table == LOCAL_TABLE or r["type"] != RTN_UNICAST:
                continue
            dst = r.address(rt.RTA_DST)
            destination = "default" if r["dst_len"] == 0 else f"{dst}/{r['dst_len']}"
            oif = r.u32(rt.RTA_OIF)
            routes.append(Route(
                destination=destination, family=_family(family),
                gateway=r.address(rt.RTA_GATEWAY),
                device=names.get(oif) if oif is not None else None,
                table=table, protocol=RT_PROTOS.get(r["proto"], str(r["proto"])),
                metric=r.u32(rt.RTA_PRIORITY), source=r.address(rt.RTA_PREFSRC)))
    return routes


def _neighbours(nl: RtNetlink, names: dict[int, str]) -> list[Neighbour]:
    result: list[Neighbour] = []
    for n in nl.neighbours():
        dst = n.address(rt.NDA_DST)
        if dst is None or n["state"] & NUD_NOARP:
            continue
        result.append(Neighbour(address=dst, device=names.get(n["ifindex"]),
                                mac=n.lladdr(rt.NDA_LLADDR), state=NUD.get(n["state"])))
    return result


def parse_resolv_conf(text: str) -> tuple[list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
        elif words and words[0] in ("search", "domain"):
            search = words[1:]
    return servers, search


def dns_config(roots: SystemRoots) -> DnsConfig:
    target = target_reader(roots)
    servers, search = parse_resolv_conf(target.read_text("etc/resolv.conf", 65536) or "")
    stub = RESOLVED_STUB in servers
    upstream: list[str] = []
    if stub:
        upstream, _ = parse_resolv_conf(
            target.read_text("run/systemd/resolve/resolv.conf", 65536) or "")
    return DnsConfig(nameservers=servers, search=search, via_resolved=stub, upstream=upstream)


def topology(links: list[Link], routes: list[Route]) -> list[TopologyEdge]:
    edges: list[TopologyEdge] = []
    for link in links:
        if link.master:
            edges.append(TopologyEdge(source=link.name, target=link.master, relation="port-of"))
        if link.parent and link.kind == "veth":
            edges.append(TopologyEdge(source=link.name, target=link.parent, relation="peer-of"))
        elif link.parent:
            edges.append(TopologyEdge(source=link.name, target=link.parent, relation="vlan-of"
                                      if link.kind == "vlan" else f"{link.kind}-of"))
    for route in routes:
        node = f"route:{route.family}:{route.destination}"
        if route.device:
            edges.append(TopologyEdge(source=node, target=route.device, relation="route-via"))
        if route.gateway:
            gw = f"gateway:{route.gateway}"
            edges.append(TopologyEdge(source=node, target=gw, relation="next-hop"))
            if route.device:
                edges.append(TopologyEdge(source=gw, target=route.device,
                                          relation="gateway-on"))
    unique = {(e.source, e.target, e.relation): e for e in edges}
    return list(unique.values())


def collect(roots: SystemRoots) -> NetworkInfo:
    with RtNetlink() as nl:
        links = _links(nl, roots)
        addresses = _addresses(nl)
        names = {link.index: link.name for link in links}
        routes = _routes(nl, names)
        neighbours = _neighbours(nl, names)
    links = [link.model_copy(update={"addresses": addresses.get(link.index, [])})
             for link in links]
    return NetworkInfo(
        links=links, routes=routes,
        default_gateways=[r for r in routes if r.destination == "default" and r.gateway],
        neighbours=neighbours, dns=dns_config(roots), topology=topology(links, routes))
