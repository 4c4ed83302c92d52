"""Cloud metadata service probe: only on explicit request (it sends HTTP requests to the
link-local metadata address), with a short timeout and no proxy.

Each provider's documented endpoint and header; AWS uses IMDSv2 (a session token first).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from oseprovd import errors

DEFAULT_TIMEOUT = 1.0
LINK_LOCAL = "http://169.254.169.254"
ALIBABA = "http://100.100.100.200"
PROVIDERS = ("aws", "gcp", "azure", "openstack", "oracle", "digitalocean", "hetzner",
             "alibaba")


class MetadataResult(BaseModel):
    provider: str
    reachable: bool
    instance_id: str | None = None
    instance_type: str | None = None
    region: str | None = None
    zone: str | None = None
    error: str | None = None


class _Http:
    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        # Never through a proxy from the environment: this address is on-link only.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def text(self, path: str, headers: dict[str, str] | None = None,
             method: str = "GET") -> str:
        # base is checked to be http:// in probe_metadata(): no file: or other schemes.
        request = urllib.request.Request(self.base + path, headers=headers or {},  # noqa: S310
                                         method=method)
        with self.opener.open(request, timeout=self.timeout) as response:
            return str(response.read(1 << 20).decode("utf-8", "replace")).strip()

    def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return json.loads(self.text(path, headers))


def _aws(http: _Http) -> dict[str, str | None]:
    token = http.text("/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                      method="PUT")
    h = {"X-aws-ec2-metadata-token": token}
    zone = http.text("/latest/meta-data/placement/availability-zone", h)
    return {"instance_id": http.text("/latest/meta-data/instance-id", h),
            "instance_type": http.text("/latest/meta-data/instance-type", h),
            "zone": zone, "region": zone[:-1] if zone else None}


def _gcp(http: _Http) -> dict[str, str | None]:
    h = {"Metadata-Flavor": "Google"}
    zone = http.text("/computeMetadata/v1/instance/zone", h).rsplit("/", 1)[-1]
    return {"instance_id": http.text("/computeMetadata/v1/instance/id", h),
            "instance_type": http.text("/computeMetadata/v1/instance/machine-type", h)
            .rsplit("/", 1)[-1], "zone": zone, "region": zone.rsplit("-", 1)[0]}


def _azure(http: _Http) -> dict[str, str | None]:
    compute = http.json("/metadata/instance?api-version=2021-02-01",
                        {"Metadata": "true"}).get("compute", {})
    return {"instance_id": compute.get("vmId"), "instance_type": compute.get("vmSize"),
            "region": compute.get("location"), "zone": compute.get("zone") or None}


def _openstack(http: _Http) -> dict[str, str | None]:
    meta = http.json("/openstack/latest/meta_data.json")
    return {"instance_id": meta.get("uuid"), "zone": meta.get("availability_zone")}


def _oracle(http: _Http) -> dict[str, str | None]:
    meta = http.json("/opc/v2/instance/", {"Authorization": "Bearer Oracle"})
    return {"instance_id": meta.get("id"), "instance_type": meta.get("shape"),
            "region": meta.get("canonicalRegionName") or meta.get("region"),
            "zone": meta.get("availabilityDomain")}


def _digitalocean(http: _Http) -> dict[str, str | None]:
    return {"instance_id": http.text("/metadata/v1/id"),
            "region": http.text("/metadata/v1/region")}


def _hetzner(http: _Http) -> dict[str, str | None]:
    return {"instance_id": http.text("/hetzner/v1/metadata/instance-id"),
            "zone": http.text("/hetzner/v1/metadata/availability-zone"),
            "region": http.text("/hetzner/v1/metadata/region")}


def _alibaba(http: _Http) -> dict[str, str | None]:
    return {"instance_id": http.text("/latest/meta-data/instance-id"),
            "instance_type": http.text("/latest/meta-data/instance/instance-type"),
            "region": http.text("/latest/meta-data/region-id"),
            "zone": http.text("/latest/meta-data/zone-id")}


_PROBES: dict[str, Callable[[_Http], dict[str, str | None]]] = {
    "aws": _aws, "gcp": _gcp, "azure": _azure, "openstack": _openstack, "oracle": _oracle,
    "digitalocean": _digitalocean, "hetzner": _hetzner, "alibaba": _alibaba,
}


def probe_metadata(provider: str, timeout: float = DEFAULT_TIMEOUT,
                   base: str | None = None) -> MetadataResult:
    """Ask `provider`'s metadata service who this instance is. Blocking (run it in a
    thread); every request has `timeout` seconds; failure is a result, not an error."""
    if provider not in _PROBES:
        raise errors.InvalidArguments(
            f"unknown cloud provider {provider!r}; choose from: {', '.join(PROVIDERS)}")
    if not 0 < timeout <= 10:
        raise errors.InvalidArguments("timeout must be in (0, 10] seconds")
    url = base or (ALIBABA if provider == "alibaba" else LINK_LOCAL)
    if not url.startswith("http://"):
        raise errors.InvalidArguments("the metadata service is plain http:// on-link")
    http = _Http(url, timeout)
    try:
        fields = _PROBES[provider](http)
    except urllib.error.HTTPError as exc:  # a server answered, but not as this provider
        return MetadataResult(provider=provider, reachable=False,
                              error=f"HTTP {exc.code} {exc.reason}")
    except (OSError, ValueError, AttributeError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return MetadataResult(provider=provider, reachable=False,
                              error=f"{type(exc).__name__}: {reason}")
    return MetadataResult(provider=provider, reachable=True,
                          **{k: v or None for k, v in fields.items()})
