"""Power supplies and batteries from /sys/class/power_supply."""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery.fsread import listdir, read_attr, read_int
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots


class PowerSupply(BaseModel):
    name: str
    type: str | None = None  # Mains, Battery, USB, UPS, Wireless
    online: bool | None = None
    status: str | None = None  # Charging, Discharging, Full, ...
    capacity_percent: int | None = None
    technology: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    serial_number: str | None = sensitive()
    cycle_count: int | None = None
    energy_full_uwh: int | None = None
    energy_full_design_uwh: int | None = None
    energy_now_uwh: int | None = None
    charge_full_uah: int | None = None
    charge_full_design_uah: int | None = None
    health_percent: float | None = None  # full / full design


class PowerInfo(BaseModel):
    supplies: list[PowerSupply] = []
    on_battery: bool | None = None  # None when there is no battery or no mains reading


def _supply(roots: SystemRoots, name: str) -> PowerSupply:
    d = roots.sys / "class" / "power_supply" / name
    online = read_int(d / "online")
    full = read_int(d / "energy_full") or read_int(d / "charge_full")
    design = read_int(d / "energy_full_design") or read_int(d / "charge_full_design")
    return PowerSupply(
        name=name, type=read_attr(d / "type"),
        online=None if online is None else bool(online),
        status=read_attr(d / "status"), capacity_percent=read_int(d / "capacity"),
        technology=read_attr(d / "technology"), manufacturer=read_attr(d / "manufacturer"),
        model_name=read_attr(d / "model_name"), serial_number=read_attr(d / "serial_number"),
        cycle_count=read_int(d / "cycle_count"),
        energy_full_uwh=read_int(d / "energy_full"),
        energy_full_design_uwh=read_int(d / "energy_full_design"),
        energy_now_uwh=read_int(d / "energy_now"),
        charge_full_uah=read_int(d / "charge_full"),
        charge_full_design_uah=read_int(d / "charge_full_design"),
        health_percent=round(100 * full / design, 1) if full and design else None,
    )


def collect(roots: SystemRoots) -> PowerInfo:
    supplies = [_supply(roots, n) for n in listdir(roots.sys / "class" / "power_supply")]
    mains = [s.online for s in supplies if s.type == "Mains" and s.online is not None]
    has_battery = any(s.type == "Battery" for s in supplies)
    on_battery = (not any(mains)) if has_battery and mains else None
    return PowerInfo(supplies=supplies, on_battery=on_battery)
