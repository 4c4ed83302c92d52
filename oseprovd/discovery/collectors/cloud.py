"""Which cloud this machine runs in, from local DMI evidence only (no network traffic).

Each rule is (provider, DMI field, predicate, strength). A strong hit makes the answer
`found`; weak hits alone make it `maybe` (e.g. Microsoft's Hyper-V product name is also
what an on-premises Hyper-V guest shows). Probing a metadata service is not done here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from oseprovd.discovery.collectors import dmi
from oseprovd.discovery.fsread import read_attr
from oseprovd.discovery.roots import SystemRoots

Strength = Literal["strong", "weak"]

AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _eq(value: str) -> Callable[[str], bool]:
    return lambda s: s.lower() == value.lower()


def _starts(value: str) -> Callable[[str], bool]:
    return lambda s: s.lower().startswith(value.lower())


def _has(value: str) -> Callable[[str], bool]:
    return lambda s: value.lower() in s.lower()


@dataclass(frozen=True)
class Rule:
    provider: str
    field: str
    test: Callable[[str], bool]
    strength: Strength
    describe: str  # what was seen, without the value when the value is sensitive


RULES: tuple[Rule, ...] = (
    Rule("aws", "sys_vendor", _eq("Amazon EC2"), "strong", "sys_vendor is Amazon EC2"),
    Rule("aws", "bios_vendor", _eq("Amazon EC2"), "strong", "bios_vendor is Amazon EC2"),
    Rule("aws", "chassis_asset_tag", _eq("Amazon EC2"), "strong",
         "chassis_asset_tag is Amazon EC2"),
    Rule("aws", "bios_version", _has("amazon"), "strong", "bios_version mentions amazon"),
    Rule("aws", "board_asset_tag", _starts("i-"), "weak", "board_asset_tag looks like i-..."),
    Rule("aws", "product_uuid", _starts("ec2"), "weak", "product_uuid starts with ec2"),
    Rule("aws", "hypervisor_uuid", _starts("ec2"), "weak", "hypervisor uuid starts with ec2"),
    Rule("gcp", "product_name", _eq("Google Compute Engine"), "strong",
         "product_name is Google Compute Engine"),
    Rule("gcp", "sys_vendor", _eq("Google"), "strong", "sys_vendor is Google"),
    Rule("gcp", "bios_vendor", _eq("Google"), "weak", "bios_vendor is Google"),
    Rule("azure", "chassis_asset_tag", _eq(AZURE_ASSET_TAG), "strong",
         "chassis_asset_tag is Azure's fixed tag"),
    Rule("azure", "sys_vendor", _eq("Microsoft Corporation"), "weak",
         "sys_vendor is Microsoft Corporation"),
    Rule("azure", "product_name", _eq("Virtual Machine"), "weak",
         "product_name is Virtual Machine (Hyper-V)"),
    Rule("openstack", "product_name", _starts("OpenStack"), "strong",
         "product_name names OpenStack"),
    Rule("openstack", "sys_vendor", _starts("OpenStack"), "strong",
         "sys_vendor names OpenStack"),
    Rule("openstack", "chassis_asset_tag", _has("OpenStack"), "weak",
         "chassis_asset_tag mentions OpenStack"),
    Rule("oracle", "chassis_asset_tag", _eq("OracleCloud.com"), "strong",
         "chassis_asset_tag is OracleCloud.com"),
    Rule("oracle", "sys_vendor", _starts("Oracle Corporation"), "weak",
         "sys_vendor is Oracle Corporation"),
    Rule("digitalocean", "sys_vendor", _eq("DigitalOcean"), "strong",
         "sys_vendor is DigitalOcean"),
    Rule("digitalocean", "product_name", _eq("Droplet"), "strong", "product_name is Droplet"),
    Rule("digitalocean", "bios_vendor", _eq("DigitalOcean"), "strong",
         "bios_vendor is DigitalOcean"),
    Rule("hetzner", "sys_vendor", _eq("Hetzner"), "strong", "sys_vendor is Hetzner"),
    Rule("hetzner", "product_name", _eq("vServer"), "weak", "product_name is vServer"),
    Rule("alibaba", "sys_vendor", _eq("Alibaba Cloud"), "strong",
         "sys_vendor is Alibaba Cloud"),
    Rule("alibaba", "product_name", _starts("Alibaba Cloud ECS"), "strong",
         "product_name is Alibaba Cloud ECS"),
)


class CloudCandidate(BaseModel):
    provider: str
    status: Literal["found", "maybe"]
    score: int
    evidence: list[str]


class CloudInfo(BaseModel):
    status: Literal["found", "maybe", "none"] = "none"
    provider: str | None = None
    evidence: list[str] = []
    candidates: list[CloudCandidate] = []


def _fields(roots: SystemRoots) -> dict[str, str]:
    info = dmi.collect(roots)
    values = {k: v for k, v in info.model_dump().items() if isinstance(v, str)}
    # Xen-era EC2 guests have no Amazon DMI strings, only this uuid.
    hv_uuid = read_attr(roots.sys / "hypervisor" / "uuid")
    if hv_uuid:
        values["hypervisor_uuid"] = hv_uuid
    return values


def detect(fields: dict[str, str]) -> CloudInfo:
    hits: dict[str, list[Rule]] = {}
    for rule in RULES:
        value = fields.get(rule.field)
        if value and rule.test(value):
            hits.setdefault(rule.provider, []).append(rule)
    candidates = []
    for provider, rules in hits.items():
        strong = any(r.strength == "strong" for r in rules)
        score = sum(3 if r.strength == "strong" else 1 for r in rules)
        candidates.append(CloudCandidate(provider=provider, status="found" if strong else "maybe",
                                         score=score, evidence=[r.describe for r in rules]))
    candidates.sort(key=lambda c: (c.status != "found", -c.score, c.provider))
    if not candidates:
        return CloudInfo()
    best = candidates[0]
    return CloudInfo(status=best.status, provider=best.provider, evidence=best.evidence,
                     candidates=candidates)


def collect(roots: SystemRoots) -> CloudInfo:
    return detect(_fields(roots))
