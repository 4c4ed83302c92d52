"""A few harmless knobs against this machine's real kernel, restored afterwards.

Truth is /proc/sys and /sys read directly. Each test puts the original value back in a
finally block even if the engine's revert failed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.network import ModprobeLoader
from oseprovd.tuning.profiles import ProfileCatalog
from oseprovd.tuning.roots import TuningRoots
from tests.harness.components import require, require_root

pytestmark = pytest.mark.root


def real_engine(tmp_path: Path, profiles: Path, disks: list[str] | None = None) -> TuningEngine:
    target = tmp_path / "target"  # limits files never go to the host's /etc
    (target / "etc/security/limits.d").mkdir(parents=True)
    roots = TuningRoots(TargetRoot("/proc"), TargetRoot("/sys"), TargetRoot(target))
    return TuningEngine(roots, FileJournal(tmp_path / "journal"),
                        ProfileCatalog(extra_dir=profiles), ModprobeLoader(), disk_devices=disks)


def other(value: int, choices: tuple[int, ...]) -> int:
    return next(c for c in choices if c != value)


def test_swappiness_and_somaxconn_on_the_real_kernel(tmp_path: Path):
    require_root("writes real kernel knobs")
    swap = Path("/proc/sys/vm/swappiness")
    somax = Path("/proc/sys/net/core/somaxconn")
    orig_swap, orig_somax = swap.read_text(), somax.read_text()
    want_swap = other(int(orig_swap), (17, 23))
    want_somax = other(int(orig_somax), (4099, 4111))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "realtest.toml").write_text(
        f"[memory]\nswappiness = {want_swap}\n[network]\nsomaxconn = {want_somax}\n")
    try:
        engine = real_engine(tmp_path, profiles)
        result = engine.apply("realtest", MachineFacts())
        assert result.complete, result.outcomes
        assert swap.read_text().strip() == str(want_swap)
        assert somax.read_text().strip() == str(want_somax)
        assert engine.verify().drifted == 0
        somax.write_text(orig_somax)  # drift behind the engine's back
        drift = {i.knob: i.status for i in engine.verify().items}
        assert drift == {"sysctl:vm.swappiness": "ok", "sysctl:net.core.somaxconn": "drifted"}
        assert engine.revert().complete
        assert swap.read_text() == orig_swap and somax.read_text() == orig_somax
    finally:
        swap.write_text(orig_swap)
        somax.write_text(orig_somax)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    require_root("creates a loop device")
    losetup = require("losetup", "a loop device to tune")
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    dev = subprocess.run([losetup, "--find", "--show", "--", str(image)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev.removeprefix("/dev/")
    finally:
        subprocess.run([losetup, "--detach", dev], check=False)


def test_loop_device_scheduler_and_read_ahead_on_the_real_kernel(tmp_path: Path,
                                                                  loop_device: str):
    queue = Path("/sys/block") / loop_device / "queue"
    sched_file, ra_file = queue / "scheduler", queue / "read_ahead_kb"
    orig_sched, orig_ra = sched_file.read_text(), ra_file.read_text()
    active = orig_sched.split("[")[1].split("]")[0]
    offered = orig_sched.replace("[", "").replace("]", "").split()
    want = next((s for s in ("mq-deadline", "kyber", "bfq", "none") if s in offered and
                 s != active), None)
    if want is None:
        pytest.skip(f"{loop_device} offers only {offered}")
    want_ra = other(int(orig_ra), (256, 512))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "looptest.toml").write_text(
        f'[disk]\nscheduler = {{ virtual = "{want}" }}\n'
        f"read_ahead_kb = {{ virtual = {want_ra} }}\n")
    try:
        engine = real_engine(tmp_path, profiles, disks=[loop_device])
        plan = {i.knob: i for i in engine.plan("looptest", MachineFacts()).items}
        assert set(plan) == {f"disk:{loop_device}:scheduler", f"disk:{loop_device}:read_ahead_kb"}
        assert engine.apply("looptest", MachineFacts()).complete
        assert f"[{want}]" in sched_file.read_text()
        assert ra_file.read_text().strip() == str(want_ra)
        assert engine.verify().drifted == 0
        assert engine.revert().complete
        assert sched_file.read_text() == orig_sched and ra_file.read_text() == orig_ra
    finally:
        if sched_file.read_text() != orig_sched:
            sched_file.write_text(active)
        ra_file.write_text(orig_ra)


def test_missing_knobs_on_this_kernel_are_not_applicable(tmp_path: Path):
    """Whatever this machine lacks (cpufreq in a VM, say) is reported, not raised."""
    require_root("writes real kernel knobs")
    engine = real_engine(tmp_path, tmp_path / "none")
    plan = engine.plan("desktop_performance", MachineFacts())
    for item in plan.items:
        if item.current is None:
            assert not item.applicable and item.reason
    if not Path("/sys/devices/system/cpu/cpufreq/policy0").exists():
        gov = next(i for i in plan.items if i.knob.startswith("cpu:") and "governor" in i.knob)
        assert not gov.applicable


def test_congestion_control_revert_restores_the_allowed_list(tmp_path: Path):
    """Setting the default congestion control also allows it to every user (the kernel
    marks it non-restricted); a revert puts the allowed list back as it was."""
    require_root("writes real kernel knobs")
    ipv4 = Path("/proc/sys/net/ipv4")
    cc, allowed = ipv4 / "tcp_congestion_control", ipv4 / "tcp_allowed_congestion_control"
    orig_cc, orig_allowed = cc.read_text(), allowed.read_text()
    current = orig_cc.strip()
    available = (ipv4 / "tcp_available_congestion_control").read_text().split()
    want = next((a for a in available if a != current), None)
    if want is None:
        pytest.skip("only one congestion control algorithm on this kernel")
    # Start from a list that leaves `want` out, so applying it changes the list.
    start = [a for a in orig_allowed.split() if a != want] or [current]
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "cctest.toml").write_text(f'[network]\ntcp_congestion_control = "{want}"\n')
    try:
        allowed.write_text(" ".join(start))
        start_text = allowed.read_text()
        engine = real_engine(tmp_path, profiles)
        assert engine.apply("cctest", MachineFacts()).complete
        assert cc.read_text().strip() == want
        assert want in allowed.read_text().split()  # the kernel's side effect
        result = engine.revert()
        assert result.complete, result.outcomes
        assert cc.read_text() == orig_cc
        assert allowed.read_text() == start_text
    finally:
        cc.write_text(orig_cc)
        allowed.write_text(orig_allowed)
