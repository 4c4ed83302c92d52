"""The engines that change the system, built from the settings without any bus code:
the daemon (app.py) and the daemon-less `osectl recovery` build them the same way, so
a rescue shell sees exactly the state the daemon left."""

from __future__ import annotations

import logging
from pathlib import Path

from oseprovd.config import Settings
from oseprovd.errors import OseError
from oseprovd.reset.accounts import Userdel
from oseprovd.reset.baseline import FileBaselineRepository
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.packages import AptChroot
from oseprovd.reset.planstore import PlanStore
from oseprovd.reset.profiles import ProfileCatalog as ResetProfiles
from oseprovd.snapshots import config as snapshot_config
from oseprovd.snapshots.backend import SnapshotBackend
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal as SnapshotJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.store.db import Store
from oseprovd.store.snapshots import StoreSnapshotRepository
from oseprovd.system.rootfs import TargetRoot

log = logging.getLogger(__name__)

RESET_DB = "reset.db"


def snapshot_configs(s: Settings) -> dict[str, SnapshotConfig]:
    """<root>/etc/ose/snapshots.d/*.toml (paths in them are inside the target root), or
    the default found from the mounts: the root filesystem by btrfs when `/` is btrfs
    (only for the real root: a sandbox root never touches the host's default
    subvolume), else by the copy store under the state dir."""
    etc = s.root / "etc/ose/snapshots.d"
    try:
        configs = snapshot_config.load_configs(etc)
    except OseError as exc:
        log.error("snapshots: %s; no snapshot configs until it is fixed", exc)
        return {}
    if configs:
        return {n: snapshot_config.under_root(c, s.root) for n, c in configs.items()}
    mountinfo = ""
    if s.root == Path("/"):
        try:
            mountinfo = (s.proc_root / "self/mountinfo").read_text()
        except OSError as exc:
            log.warning("snapshots: cannot read the mounts (%s); using the copy store", exc)
    defaults = snapshot_config.default_configs(mountinfo, s.state_dir)
    for c in defaults.values():
        if c.backend == "copy" and c.snapshot_dir.parent.parent == s.state_dir:
            # <state>/snapshots: the backend makes only the last component (0700)
            c.snapshot_dir.parent.mkdir(mode=0o700, exist_ok=True)
    return {n: snapshot_config.under_root(c, s.root, rebase_snapshot_dir=False)
            for n, c in defaults.items()}


def snapshot_engine(s: Settings, store: Store) -> SnapshotEngine:
    """The snapshot engine, recovered: a rollback or undo that a killed daemon left is
    finished or reverted before anything else may change the system. Other engines that
    change the system get this object (`pre_post` around their changes)."""
    from oseprovd.snapshots.btrfs_backend import BtrfsBackend
    from oseprovd.snapshots.copy_backend import CopyBackend
    from oseprovd.snapshots.lvm_backend import LvmBackend

    backends: dict[str, SnapshotBackend] = {
        "btrfs": BtrfsBackend(s.proc_root), "copy": CopyBackend(), "lvm": LvmBackend()}
    journal = SnapshotJournal(s.state_dir / "snapshots.journal")
    engine = SnapshotEngine(snapshot_configs(s), StoreSnapshotRepository(store), backends,
                            journal, mounts_dir=s.state_dir / "mounts")
    entries = journal.entries()
    if entries:
        for outcome in engine.recover(entries):
            log.warning("snapshots: %s left by a stopped daemon: %s%s", outcome.action,
                        outcome.outcome, f" ({outcome.message})" if outcome.message else "",
                        extra={"OSE_SNAPSHOT_OP": outcome.op})
        if not SnapshotEngine.pending(journal.entries()):
            journal.clear()
    names = ", ".join(f"{c.name} ({c.backend}, {c.path})" for c in engine.list_configs())
    log.info("snapshots: configs %s", names or "none")
    return engine


def reset_engine(s: Settings, snapshots: SnapshotEngine | None, *,
                 workers: int | None = None) -> ResetEngine:
    """The reset engine over the target root, its plan store and baseline in the state
    dir, and the one snapshot engine (config "root", which covers the target root) for
    its rollback points. apt runs chrooted in the target, so only a target with its own
    apt-get gets the package tool (userdel --root works on any target)."""
    root = TargetRoot(s.root)
    has_apt = (s.root / "usr/bin/apt-get").exists()
    return ResetEngine(
        root, PlanStore(s.state_dir / RESET_DB), FileBaselineRepository(s.state_dir),
        snapshots, snapshot_config="root", state_dir=s.state_dir,
        profiles=ResetProfiles(root), proc=s.proc_root, workers=workers,
        packages=AptChroot() if has_apt else None, accounts=Userdel())
