"""The LVM thin backend on real LVM, in a qemu VM (this machine's kernel has no
device-mapper). The VM boots a cached Debian 12 image (vmimage.py; cold build a few
minutes, then cached), runs tests/vm/guest/lvm_guest.py with pytest on a fresh second
disk and powers off; here we assert on the junit XML it wrote.

Run alone:  CI=true .venv/bin/python -m pytest tests/vm -v
Locally a missing qemu/debootstrap skips; under CI=true it fails.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.harness.components import missing, require, require_root
from tests.vm.qemu import VmRun, run_vm
from tests.vm.vmimage import ensure_image

pytestmark = [pytest.mark.root, pytest.mark.slow]

JOB = "tests/vm/guest/lvm-job.sh"
GUEST_TESTS = Path(__file__).resolve().parent / "guest" / "lvm_guest.py"
VM_TIMEOUT = 900  # TCG is slow; a hung guest is killed at this point


def guest_test_names() -> set[str]:
    """The guest's test functions, read from its source (so none can go missing)."""
    names = set()
    for line in GUEST_TESTS.read_text().splitlines():
        if line.startswith("def test_"):
            names.add(line.split("(")[0].removeprefix("def "))
    return names


def junit_results(path: Path) -> dict[str, list[tuple[str, str]]]:
    """test function name -> [(case name, "passed" or "<outcome>: <message>")], the
    outcome being failed, error or skipped."""
    out: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (el.get("message") or "") + "\n" + (el.text or "")
                break
        out.setdefault(name.split("[")[0], []).append((name, f"{outcome}: {message}"
                                                      if message else outcome))
    return out


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> VmRun:
    require_root("debootstrap, chroot and mkfs.ext4 -d build the VM image")
    require("qemu-system-x86_64", "a VM with device-mapper (apt: qemu-system-x86)")
    if sys.version_info[:2] != (3, 11):
        missing("the guest imports this interpreter's site-packages: needs Python 3.11 "
                "(Debian 12's)")
    image = ensure_image()
    work = tmp_path_factory.mktemp("lvm-vm")
    disk = work / "lvm-disk.img"
    with open(disk, "wb") as f:
        f.truncate(512 << 20)  # sparse: costs what the guest writes
    run = run_vm(image, JOB, work, disks=(disk,), timeout=VM_TIMEOUT)
    print(f"[lvm-vm] guest run took {run.seconds:.1f} s, job exit code {run.rc}")
    return run


@pytest.mark.timeout(VM_TIMEOUT + 900)  # + a cold image build
def test_guest_lvm_suite_passed(guest_run: VmRun) -> None:
    run = guest_run
    assert not run.timed_out, f"VM killed after {VM_TIMEOUT} s:\n{run.tail()}"
    junit = run.out / "junit.xml"
    assert junit.exists(), f"the guest wrote no junit XML (rc {run.rc}):\n{run.tail()}"
    results = junit_results(junit)
    missing_tests = guest_test_names() - set(results)
    assert not missing_tests, f"guest tests that did not run: {sorted(missing_tests)}"
    bad = {case: outcome for cases in results.values() for case, outcome in cases
           if outcome != "passed"}
    assert not bad, "guest tests not passed:\n" + "\n".join(
        f"--- {case}: {outcome}" for case, outcome in bad.items()) + "\n" + run.tail(40)
    assert run.rc == 0, run.tail()
