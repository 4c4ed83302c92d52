"""What changed between two reports, as a flat list of changes.

Lists of records are matched by their natural key (a unit's name, a mount point, a
package's name and architecture...), so adding one unit file is one change, not a
shifted list. Lists of plain values (CPU flags) are compared as sets. Values that move
on their own (free memory, the current clock, timings) are left out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from oseprovd.discovery.report import Report

Scalar = str | int | float | bool | None

# Matching keys for records in lists, tried in order.
_KEYS = (("name", "architecture"), ("name",), ("mountpoint",), ("protocol", "family", "address",
         "port"), ("destination", "family", "table", "gateway"), ("address", "device"),
         ("source", "target", "relation"), ("engine",), ("locator", "bank_locator"),
         ("kind", "id", "architecture", "branch"), ("level", "type"), ("node",),
         ("path",), ("address",))

# Dotted paths (list keys dropped) of values that change without anything happening.
VOLATILE = frozenset({
    "started_at", "finished_at", "duration_ms", "outcomes",
    "memory.available_bytes", "memory.free_bytes", "memory.buffers_bytes",
    "memory.cached_bytes", "memory.swap_free_bytes", "memory.swap_areas.used_bytes",
    "cpu.current_mhz", "power.supplies.capacity_percent", "power.supplies.energy_now_uwh",
    "power.supplies.status", "power.on_battery", "network.neighbours",
    "sockets.listening.owners", "nics.interfaces.operstate", "nics.interfaces.carrier",
    "network.links.operstate", "nics.interfaces.speed_mbps",
})


class Change(BaseModel):
    path: str  # e.g. services.systemd_units[web.service].state
    kind: Literal["added", "removed", "changed"]
    old: Scalar = None
    new: Scalar = None


class ReportDiff(BaseModel):
    changes: list[Change] = []


def _unique(items: list[dict[str, Any]], fields: tuple[str, ...]) -> bool:
    keys = [tuple(i[f] for f in fields) for i in items]
    return len(set(keys)) == len(keys)


def _key_fields(old: list[Any], new: list[Any]) -> tuple[str, ...] | None:
    """The first key that every record has and that is unique within each list."""
    items = old + new
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for fields in _KEYS:
        if all(all(f in i for f in fields) for i in items) and \
                _unique(old, fields) and _unique(new, fields):
            return fields
    return None


def _label(item: dict[str, Any], fields: tuple[str, ...]) -> str:
    return ",".join("" if item[f] is None else str(item[f]) for f in fields)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class _Differ:
    def __init__(self, ignore: frozenset[str]) -> None:
        self.ignore = ignore
        self.changes: list[Change] = []

    def walk(self, old: Any, new: Any, path: str, pattern: str) -> None:
        if pattern in self.ignore or old == new:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in list(old) + [k for k in new if k not in old]:
                sub = f"{path}.{key}" if path else str(key)
                subpattern = f"{pattern}.{key}" if pattern else str(key)
                if subpattern in self.ignore:
                    continue
                if key not in new:
                    self.changes.append(Change(path=sub, kind="removed"))
                elif key not in old:
                    self.changes.append(Change(path=sub, kind="added"))
                else:
                    self.walk(old[key], new[key], sub, subpattern)
        elif isinstance(old, list) and isinstance(new, list):
            self._lists(old, new, path, pattern)
        else:
            self.changes.append(Change(path=path, kind="changed", old=_scalar(old),
                                       new=_scalar(new)))

    def _lists(self, old: list[Any], new: list[Any], path: str, pattern: str) -> None:
        fields = _key_fields(old, new)
        if fields is not None:
            before = {_label(i, fields): i for i in old}
            after = {_label(i, fields): i for i in new}
            for label, item in before.items():
                if label not in after:
                    self.changes.append(Change(path=f"{path}[{label}]", kind="removed"))
                else:
                    self.walk(item, after[label], f"{path}[{label}]", pattern)
            for label in after:
                if label not in before:
                    self.changes.append(Change(path=f"{path}[{label}]", kind="added"))
            return
        if all(not isinstance(v, dict | list) for v in old + new):
            olds, news = {_scalar(v) for v in old}, {_scalar(v) for v in new}
            self.changes += [Change(path=path, kind="removed", old=v)
                             for v in sorted(olds - news, key=str)]
            self.changes += [Change(path=path, kind="added", new=v)
                             for v in sorted(news - olds, key=str)]
            return
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                self.changes.append(Change(path=f"{path}[{i}]", kind="removed"))
            elif i >= len(old):
                self.changes.append(Change(path=f"{path}[{i}]", kind="added"))
            else:
                self.walk(old[i], new[i], f"{path}[{i}]", pattern)


def diff_models(old: BaseModel, new: BaseModel,
                ignore: frozenset[str] = VOLATILE) -> ReportDiff:
    differ = _Differ(ignore)
    differ.walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "", "")
    return ReportDiff(changes=differ.changes)


def diff_reports(old: Report, new: Report, ignore: frozenset[str] = VOLATILE) -> ReportDiff:
    """Changes from `old` to `new`; sections absent from either report are skipped."""
    both = [n for n in Report.model_fields if n not in VOLATILE
            and getattr(old, n) is not None and getattr(new, n) is not None
            and isinstance(getattr(old, n), BaseModel)]
    differ = _Differ(ignore)
    for name in both:
        differ.walk(getattr(old, name).model_dump(mode="json"),
                    getattr(new, name).model_dump(mode="json"), name, name)
    return ReportDiff(changes=differ.changes)
