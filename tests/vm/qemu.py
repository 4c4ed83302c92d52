"""Boot the test VM (vmimage.py) under qemu and collect what its job left behind.

No KVM: qemu runs under TCG software emulation, so the VM is small (1 vCPU) and boots
straight into /ose-vm-init, which runs `ose.job` and powers off. The root image is
opened with `-snapshot` (never written). Three 9p shares: the repository (read-only),
the Python site-packages of the running interpreter (read-only; same Debian Python
3.11 as the guest, so the guest imports pydantic & co from there) and a results
directory the job writes (`rc`, junit XML). qemu is always gone when run_vm returns:
killed at the timeout, and in a `finally`.
"""

from __future__ import annotations

import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.components import REPO_ROOT, require
from tests.vm.vmimage import VmImage


@dataclass(frozen=True)
class VmRun:
    rc: int | None  # the job's exit code; None if it never wrote one
    console: str  # the serial console (kernel, init, job output)
    out: Path  # the results share
    seconds: float
    timed_out: bool

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _share(tag: str, path: Path, readonly: bool) -> list[str]:
    opts = f"local,path={path},mount_tag={tag},security_model=none"
    return ["-virtfs", opts + (",readonly=on" if readonly else "")]


def run_vm(image: VmImage, job: str, workdir: Path, disks: tuple[Path, ...] = (),
           timeout: float = 600, memory_mb: int = 768) -> VmRun:
    """Boot, run `job` (a path inside the repository) and wait for the power-off.
    `disks` are raw images the guest sees as /dev/vdb, /dev/vdc, ... (written)."""
    qemu = require("qemu-system-x86_64", "the VM that has device-mapper (apt: "
                   "qemu-system-x86)")
    out = workdir / "out"
    out.mkdir()
    console = workdir / "console.log"
    argv = [qemu, "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-smp", "1",
            "-m", str(memory_mb), "-display", "none", "-monitor", "none",
            "-serial", "stdio", "-no-reboot", "-snapshot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 init=/ose-vm-init panic=-1 "
                       f"loglevel=4 ose.job={job}",
            "-drive", f"file={image.root},format=raw,if=virtio",
            "-device", "virtio-rng-pci",
            *_share("repo", REPO_ROOT, True), *_share("site", site_packages(), True),
            *_share("out", out, False)]
    for disk in disks:
        argv += ["-drive", f"file={disk},format=raw,if=virtio,snapshot=off"]
    t = time.monotonic()
    timed_out = False
    with open(console, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rc_file = out / "rc"
    rc = int(rc_file.read_text().strip()) if rc_file.exists() else None
    return VmRun(rc=rc, console=console.read_text(errors="replace"), out=out,
                 seconds=time.monotonic() - t, timed_out=timed_out)
