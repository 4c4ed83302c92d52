"""Settings: /etc/ose/oseprovd.toml read into pydantic models; command-line flags win."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oseprovd.errors import InvalidArguments

DEFAULT_CONFIG = Path("/etc/ose/oseprovd.toml")


class Limits(BaseModel):
    """Bounds on what one caller may send and how often (see README, Security)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_string_bytes: int = Field(65536, ge=64, le=16 << 20)
    max_array_length: int = Field(10000, ge=1, le=1 << 20)
    max_depth: int = Field(16, ge=2, le=64)
    max_pending_calls_per_sender: int = Field(16, ge=1, le=4096)
    # Token bucket per uid on expensive methods (those that start jobs or read a lot).
    rate_per_uid_per_second: float = Field(5.0, gt=0, le=10000)
    rate_burst: int = Field(20, ge=1, le=100000)
    polkit_timeout_seconds: float = Field(10.0, gt=0, le=600)
    polkit_interactive_timeout_seconds: float = Field(300.0, gt=0, le=3600)
    # A finished job's org.ose.Job1 object stays on the bus this long, and at most this
    # many finished ones at once (each costs the daemon memory); GetJob reads the store.
    finished_job_linger_seconds: float = Field(600.0, ge=0, le=7 * 86400)
    max_finished_job_objects: int = Field(100, ge=0, le=10000)


class DiscoverySettings(BaseModel):
    """org.ose.Discovery1: how long Get* answers are reused, how many reports are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_ttl_seconds: float = Field(300.0, ge=0, le=86400)
    keep_reports: int = Field(50, ge=1, le=10000)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bus: str = "system"
    root: Path = Path("/")
    # Where the kernel's procfs and sysfs are: the host's, or sandbox trees for tests.
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    state_dir: Path = Path("/var/lib/oseprovd")
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")
    # Exports org.ose.Test1 with a demo job; for the test suite only, never in production.
    test_interface: bool = False
    # Seconds between timeline snapshots + retention cleanup of every snapshot config;
    # 0 turns the timer off.
    snapshot_timer_seconds: float = Field(3600.0, ge=0, le=7 * 86400)
    limits: Limits = Limits()
    discovery: DiscoverySettings = DiscoverySettings()


def load_settings(config_path: Path | None, overrides: dict[str, Any]) -> Settings:
    """Read the TOML file (a missing default file is fine) and apply flag overrides."""
    data: dict[str, Any] = {}
    path = config_path or DEFAULT_CONFIG
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if config_path is not None:
            raise InvalidArguments(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArguments(f"config file {path} is not valid TOML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidArguments(f"invalid settings in {path}: {problems}") from None
