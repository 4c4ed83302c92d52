"""Discovery engine: collectors that describe a machine, and the runner that scans.

Public API (what the bus layer calls):
    DiscoveryEngine(roots).collect(subset, timeout) -> Report   (async)
    DiscoveryEngine(roots).collect_one(name) -> section model | None
    redact(model) -> copy without sensitive fields (serials, UUIDs, MACs)
    diff_reports(old, new) -> ReportDiff (flat list of Change)
    DiscoveryCache(engine, ttl).get(subset) -> Report; .device_event(subsystem)
    performance.profile(roots, seconds, interval, progress=...) -> PerformanceProfile
"""

from oseprovd.discovery.cache import DiscoveryCache
from oseprovd.discovery.diff import Change, ReportDiff, diff_reports
from oseprovd.discovery.engine import DiscoveryEngine
from oseprovd.discovery.redact import redact
from oseprovd.discovery.report import CollectorOutcome, Report
from oseprovd.discovery.roots import SystemRoots

__all__ = ["Change", "CollectorOutcome", "DiscoveryCache", "DiscoveryEngine", "Report",
           "ReportDiff", "SystemRoots", "diff_reports", "redact"]
