"""The result of a scan: one typed section per collector plus how each one went."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel

from oseprovd.discovery.collectors.applications import ApplicationsInfo
from oseprovd.discovery.collectors.block import BlockInfo
from oseprovd.discovery.collectors.cloud import CloudInfo
from oseprovd.discovery.collectors.containers import ContainersInfo
from oseprovd.discovery.collectors.cpu import CpuInfo
from oseprovd.discovery.collectors.databases import DatabasesInfo
from oseprovd.discovery.collectors.dmi import DmiInfo
from oseprovd.discovery.collectors.gpus import GpusInfo
from oseprovd.discovery.collectors.memory import MemoryInfo
from oseprovd.discovery.collectors.mounts import MountsInfo
from oseprovd.discovery.collectors.network import NetworkInfo
from oseprovd.discovery.collectors.nics import NicsInfo
from oseprovd.discovery.collectors.osinfo import OsInfo
from oseprovd.discovery.collectors.packages import PackagesInfo
from oseprovd.discovery.collectors.power import PowerInfo
from oseprovd.discovery.collectors.security import SecurityInfo
from oseprovd.discovery.collectors.services import ServicesInfo
from oseprovd.discovery.collectors.sockets import SocketsInfo
from oseprovd.discovery.collectors.virt import Virtualization

Status = Literal["ok", "error", "timeout"]


class CollectorOutcome(BaseModel):
    name: str
    status: Status
    duration_ms: float
    error: str | None = None  # what went wrong, for 'error' and 'timeout'


class Report(BaseModel):
    """Sections are None when the collector was not selected or did not finish."""

    started_at: datetime
    finished_at: datetime
    duration_ms: float
    subset: list[str]  # as asked
    collectors: list[str]  # as resolved
    outcomes: list[CollectorOutcome]

    cpu: CpuInfo | None = None
    memory: MemoryInfo | None = None
    block: BlockInfo | None = None
    mounts: MountsInfo | None = None
    nics: NicsInfo | None = None
    gpus: GpusInfo | None = None
    power: PowerInfo | None = None
    dmi: DmiInfo | None = None
    virtualization: Virtualization | None = None
    cloud: CloudInfo | None = None
    os: OsInfo | None = None
    packages: PackagesInfo | None = None
    services: ServicesInfo | None = None
    applications: ApplicationsInfo | None = None
    sockets: SocketsInfo | None = None
    network: NetworkInfo | None = None
    containers: ContainersInfo | None = None
    databases: DatabasesInfo | None = None
    security: SecurityInfo | None = None

    def outcome(self, name: str) -> CollectorOutcome | None:
        return next((o for o in self.outcomes if o.name == name), None)

    @property
    def failed(self) -> list[CollectorOutcome]:
        return [o for o in self.outcomes if o.status != "ok"]


def section_type(name: str) -> type[BaseModel] | None:
    """The model a collector called `name` must return (None: the report has no slot)."""
    field = Report.model_fields.get(name)
    if field is None:
        return None
    for arg in get_args(field.annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
