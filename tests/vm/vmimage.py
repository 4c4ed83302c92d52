"""A small Debian 12 VM image for tests that need a kernel this machine lacks (LVM needs
device-mapper), built once with debootstrap and cached.

Cache (CACHE_DIR, default /var/cache/ose-tests; env OSE_TEST_CACHE), two levels, each
keyed by a hash of what it is made from, so a change rebuilds only what it touches:
  vm-root-<key>.tar       the debootstrapped tree (packages, trimmed, initrd rebuilt)
  vm-image-<key>/         root.img (ext4 made with `mkfs.ext4 -d`), vmlinuz, initrd.img
                          and the init script ose-vm-init; `ready` marks it complete
Older keys are removed when a new one is built. A file lock keeps two builders apart.

The image is booted with qemu `-snapshot`, so it is never written; see qemu.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.components import missing, require, require_root
from tests.integration.reset.debian_root import CACHE_DIR, apt_mirror

SUITE = "bookworm"
# Bump to force a rebuild when the recipe changes in a way the key doesn't see.
RECIPE = 1
PACKAGES = ("linux-image-amd64", "initramfs-tools", "kmod", "udev", "lvm2",
            "thin-provisioning-tools", "python3", "acl")
# The initrd only has to find the root disk; everything else loads from the root.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
# Not needed in a headless VM with virtio disks; trimmed for a smaller, faster image.
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
        "usr/share/locale", "usr/share/info")
TRIM_MODULES = ("sound", "drivers/gpu", "drivers/media", "drivers/net",
                "drivers/infiniband", "drivers/staging", "drivers/bluetooth", "drivers/iio",
                "drivers/usb", "drivers/hid", "net/wireless", "net/bluetooth",
                "net/mac80211")
IMAGE_MB = 1024
INIT = Path(__file__).resolve().parent / "guest" / "ose-vm-init"


@dataclass(frozen=True)
class VmImage:
    root: Path
    kernel: Path
    initrd: Path


def _log(msg: str) -> None:
    print(f"[vmimage] {msg}", flush=True)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def root_key() -> str:
    return _key("root", RECIPE, SUITE, PACKAGES, INITRD_MODULES, TRIM, TRIM_MODULES)


def image_key() -> str:
    return _key("image", root_key(), IMAGE_MB, INIT.read_text())


@contextmanager
def _locked() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "vm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _rm(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


def _prune(prefix: str, keep: str) -> None:
    for old in CACHE_DIR.glob(f"{prefix}*"):
        if old.name != keep:
            _rm(old)


def _build_root(tar: Path) -> None:
    debootstrap = require("debootstrap", "building the test VM's Debian root")
    work = CACHE_DIR / "vm-work"
    _rm(work)
    try:
        t = time.monotonic()
        # debootstrap is a shell script that rejects "--"; its positional arguments
        # are ours (a fixed suite, our path, the mirror from apt's sources).
        r = subprocess.run([debootstrap, "--variant=minbase",
                            f"--include={','.join(PACKAGES)}", SUITE, str(work),
                            apt_mirror()], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            missing(f"debootstrap for the VM image failed (no mirror?): {r.stderr[-800:]}")
        _log(f"debootstrap (download + install) took {time.monotonic() - t:.1f} s")
        for p in TRIM:
            _rm(work / p)
        (kver,) = os.listdir(work / "lib/modules")
        for p in TRIM_MODULES:
            _rm(work / "lib/modules" / kver / "kernel" / p)
        conf = work / "etc/initramfs-tools/initramfs.conf"
        conf.write_text(conf.read_text().replace("MODULES=most", "MODULES=list"))
        with open(work / "etc/initramfs-tools/modules", "a") as f:
            f.write("".join(f"{m}\n" for m in INITRD_MODULES))
        # In a private mount and pid namespace with its own /proc: nothing to unmount
        # afterwards, whatever happens.
        for argv in (["depmod", kver], ["update-initramfs", "-u", "-k", kver]):
            subprocess.run([require("unshare", "a private /proc for the chroot"),
                            "--mount", "--pid", "--fork", f"--mount-proc={work}/proc",
                            "chroot", str(work), *argv],
                           check=True, capture_output=True)
        part = tar.with_suffix(".part")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "-cf",
                        str(part), "."], check=True)
        part.rename(tar)
        _log(f"root built in {time.monotonic() - t:.1f} s")
    finally:
        _rm(work)


def _build_image(tar: Path, out: Path) -> None:
    mkfs = require("mkfs.ext4", "making the VM's root filesystem")
    t = time.monotonic()
    work = CACHE_DIR / "vm-work"
    part = out.with_name(out.name + ".part")
    _rm(work)
    _rm(part)
    try:
        work.mkdir()
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "-xf",
                        str(tar)], check=True)
        shutil.copyfile(INIT, work / "ose-vm-init")
        os.chmod(work / "ose-vm-init", 0o755)
        part.mkdir()
        (kernel,) = (work / "boot").glob("vmlinuz-*")
        (initrd,) = (work / "boot").glob("initrd.img-*")
        shutil.copyfile(kernel, part / "vmlinuz")
        shutil.copyfile(initrd, part / "initrd.img")
        subprocess.run([mkfs, "-q", "-F", "-L", "ose-vm", "-d", str(work), "--",
                        str(part / "root.img"), f"{IMAGE_MB}M"], check=True,
                       capture_output=True)
        (part / "ready").write_text(image_key() + "\n")
        part.rename(out)
        _log(f"image made in {time.monotonic() - t:.1f} s")
    finally:
        _rm(work)
        _rm(part)


def ensure_image() -> VmImage:
    """The cached VM image, built first if needed (cold: a few minutes)."""
    require_root("debootstrap, chroot and mkfs for the VM image")
    out = CACHE_DIR / f"vm-image-{image_key()}"
    if not (out / "ready").exists():
        with _locked():
            if not (out / "ready").exists():
                tar = CACHE_DIR / f"vm-root-{root_key()}.tar"
                if not tar.exists():
                    _build_root(tar)
                    _prune("vm-root-", tar.name)
                _build_image(tar, out)
                _prune("vm-image-", out.name)
    return VmImage(root=out / "root.img", kernel=out / "vmlinuz", initrd=out / "initrd.img")
