"""Network interfaces as hardware: /sys/class/net (driver, speed, MAC, kind, bus)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from oseprovd.discovery.fsread import link_name, listdir, read_attr, read_int, read_text
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots

# include/uapi/linux/if_arp.h, the common ones.
ARPHRD = {1: "ether", 24: "ieee1394", 32: "infiniband", 280: "can", 512: "ppp",
          768: "ipip", 769: "tunnel6", 772: "loopback", 776: "sit", 778: "gre",
          823: "ip6gre", 801: "ieee80211", 803: "ieee80211_radiotap", 65534: "none"}


class NetInterface(BaseModel):
    name: str
    ifindex: int | None = None
    kind: str  # physical, loopback, bridge, bond, vlan, wireless, tun, veth?, virtual
    link_type: str | None = None  # ARPHRD name: ether, loopback, none, ...
    mac: str | None = sensitive()
    permanent_mac: str | None = sensitive()
    mtu: int | None = None
    operstate: str | None = None
    carrier: bool | None = None
    speed_mbps: int | None = None  # None when the link is down or the driver won't say
    duplex: str | None = None
    driver: str | None = None
    bus: str | None = None  # pci, usb, virtio, platform...
    vendor_id: str | None = None
    device_id: str | None = None
    master: str | None = None  # the bridge or bond this one is enslaved to
    lower: list[str] = []  # interfaces below (vlan -> parent, bond -> slaves)
    physical: bool = False


class NicsInfo(BaseModel):
    interfaces: list[NetInterface] = []


_DEVTYPES = {"vlan": "vlan", "wlan": "wireless", "wireguard": "wireguard", "bond": "bond",
             "bridge": "bridge", "macvlan": "macvlan", "vxlan": "vxlan"}


def _kind(d: Path, name: str, uevent: dict[str, str], physical: bool,
          roots: SystemRoots) -> str:
    """What an interface is, from the markers sysfs and procfs leave for each kind."""
    if name == "lo" or read_int(d / "type") == 772:
        return "loopback"
    markers = (
        ((d / "bridge").is_dir(), "bridge"),
        ((d / "bonding").is_dir(), "bond"),
        (uevent.get("DEVTYPE") in _DEVTYPES, _DEVTYPES.get(uevent.get("DEVTYPE", ""), "")),
        ((d / "wireless").is_dir() or (d / "phy80211").exists(), "wireless"),
        ((d / "tun_flags").exists(), "tun"),
        ((roots.proc / "net" / "vlan" / name).exists(), "vlan"),
    )
    kind = next((k for hit, k in markers if hit), None)
    return kind or ("physical" if physical else "virtual")


def _uevent(d: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in (read_text(d / "uevent") or "").splitlines():
        key, _, value = line.partition("=")
        result[key] = value
    return result


def _bus(device: Path) -> str | None:
    subsystem = link_name(device / "subsystem")
    if subsystem == "virtio":
        return "virtio"
    parent_sub = link_name(device.parent / "subsystem") if device.exists() else None
    if subsystem == "usb" or parent_sub == "usb":
        return "usb"
    return subsystem


def _interface(roots: SystemRoots, name: str) -> NetInterface:
    d = roots.sys / "class" / "net" / name
    device = d / "device"
    physical = device.exists()
    uevent = _uevent(d)
    ltype = read_int(d / "type")
    carrier = read_int(d / "carrier")
    speed = read_int(d / "speed")
    real_device = Path(os.path.realpath(device)) if physical else device
    lower = [e.removeprefix("lower_") for e in listdir(d) if e.startswith("lower_")]
    return NetInterface(
        name=name, ifindex=read_int(d / "ifindex"),
        kind=_kind(d, name, uevent, physical, roots),
        link_type=ARPHRD.get(ltype or -1, str(ltype) if ltype is not None else None),
        mac=read_attr(d / "address"), permanent_mac=read_attr(d / "perm_addr"),
        mtu=read_int(d / "mtu"), operstate=read_attr(d / "operstate"),
        carrier=None if carrier is None else bool(carrier),
        speed_mbps=speed if speed is not None and speed > 0 else None,
        duplex=read_attr(d / "duplex"),
        driver=link_name(device / "driver") if physical else None,
        bus=_bus(real_device) if physical else None,
        vendor_id=read_attr(device / "vendor") if physical else None,
        device_id=read_attr(device / "device") if physical else None,
        master=link_name(d / "master"), lower=lower, physical=physical,
    )


def collect(roots: SystemRoots) -> NicsInfo:
    net = roots.sys / "class" / "net"
    return NicsInfo(interfaces=[_interface(roots, n) for n in listdir(net)])
