"""Profile conditions evaluated against MachineFacts, with an explanation per fact."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from oseprovd.tuning.facts import DiskType, MachineFacts


class Reason(BaseModel):
    """One fact checked against one condition."""

    fact: str
    value: str
    expected: str
    ok: bool


class Conditions(BaseModel):
    """All given conditions must hold; a list means "any of these"."""

    model_config = ConfigDict(extra="forbid")

    virtual: bool | None = None
    virtualization: list[str] | None = None
    cloud: list[str] | None = None
    chassis: list[str] | None = None
    battery: bool | None = None
    cpu_vendor: list[str] | None = None
    min_memory_gib: float | None = None
    max_memory_gib: float | None = None
    min_cpus: int | None = None
    disk_types: list[DiskType] | None = None
    roles: list[str] | None = None

    def explain(self, facts: MachineFacts) -> list[Reason]:
        out: list[Reason] = []

        def one_of(fact: str, value: str, allowed: list[str] | None) -> None:
            if allowed is not None:
                out.append(Reason(fact=fact, value=value, expected="one of " + ", ".join(allowed),
                                  ok=value in allowed))

        if self.virtual is not None:
            out.append(Reason(fact="virtualization", value=facts.virtualization,
                              expected="virtual machine" if self.virtual else "bare metal",
                              ok=facts.virtual == self.virtual))
        one_of("virtualization", facts.virtualization, self.virtualization)
        one_of("cloud_provider", facts.cloud_provider, self.cloud)
        one_of("chassis", facts.chassis, self.chassis)
        if self.battery is not None:
            out.append(Reason(fact="has_battery", value=str(facts.has_battery).lower(),
                              expected=str(self.battery).lower(),
                              ok=facts.has_battery == self.battery))
        one_of("cpu_vendor", facts.cpu_vendor, self.cpu_vendor)
        mem = facts.memory_gib
        gib = "unknown" if mem is None else f"{mem:.1f} GiB"
        if self.min_memory_gib is not None:
            out.append(Reason(fact="memory", value=gib, expected=f">= {self.min_memory_gib} GiB",
                              ok=mem is not None and mem >= self.min_memory_gib))
        if self.max_memory_gib is not None:
            out.append(Reason(fact="memory", value=gib, expected=f"<= {self.max_memory_gib} GiB",
                              ok=mem is not None and mem <= self.max_memory_gib))
        if self.min_cpus is not None:
            out.append(Reason(fact="cpu_count", value=str(facts.cpu_count),
                              expected=f">= {self.min_cpus}", ok=facts.cpu_count >= self.min_cpus))
        if self.disk_types is not None:
            out.append(Reason(fact="disk_types", value=", ".join(facts.disk_types) or "none",
                              expected="any of " + ", ".join(self.disk_types),
                              ok=bool(set(facts.disk_types) & set(self.disk_types))))
        if self.roles is not None:
            out.append(Reason(fact="roles", value=", ".join(facts.roles) or "none",
                              expected="any of " + ", ".join(self.roles),
                              ok=bool(set(facts.roles) & set(self.roles))))
        return out

    def holds(self, facts: MachineFacts) -> bool:
        return all(r.ok for r in self.explain(facts))
