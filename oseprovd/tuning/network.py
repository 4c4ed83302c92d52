"""Network knobs: TCP congestion control (loading tcp_<name> on demand), buffers, backlog.

Everything but congestion control is a plain sysctl key. Congestion control may need a
module: it is loaded with `modprobe -- tcp_<name>` only when a profile asks for an
algorithm the kernel does not offer yet and the module file exists for this kernel.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from typing import Any, Protocol

from oseprovd import errors
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.roots import read_attr, write_attr
from oseprovd.tuning.sysctl import SysctlKnob

MODULE_RE = re.compile(r"^tcp_[a-z0-9_]{1,32}$")
RELEASE_RE = re.compile(r"^[A-Za-z0-9._+~-]{1,64}$")
ALLOWED = "sys/net/ipv4/tcp_allowed_congestion_control"

# Friendly names in a profile's [network] section -> sysctl keys.
NETWORK_KEYS = {
    "tcp_congestion_control": "net.ipv4.tcp_congestion_control",
    "default_qdisc": "net.core.default_qdisc",
    "somaxconn": "net.core.somaxconn",
    "netdev_max_backlog": "net.core.netdev_max_backlog",
    "tcp_max_syn_backlog": "net.ipv4.tcp_max_syn_backlog",
    "rmem_max": "net.core.rmem_max",
    "wmem_max": "net.core.wmem_max",
    "rmem_default": "net.core.rmem_default",
    "wmem_default": "net.core.wmem_default",
    "tcp_rmem": "net.ipv4.tcp_rmem",
    "tcp_wmem": "net.ipv4.tcp_wmem",
    "tcp_fastopen": "net.ipv4.tcp_fastopen",
    "tcp_slow_start_after_idle": "net.ipv4.tcp_slow_start_after_idle",
    "tcp_notsent_lowat": "net.ipv4.tcp_notsent_lowat",
    "tcp_mtu_probing": "net.ipv4.tcp_mtu_probing",
    "busy_poll": "net.core.busy_poll",
    "busy_read": "net.core.busy_read",
    "ip_local_port_range": "net.ipv4.ip_local_port_range",
}


class ModuleLoader(Protocol):
    def load(self, module: str) -> None:
        """Load one kernel module; raise OseError when it cannot be loaded."""

    def unload(self, module: str) -> None:
        """Unload a module this engine loaded; raise OseError when it is in use."""


class ModprobeLoader:
    """The real loader: modprobe with an argv list and `--` before the name."""

    def __init__(self, modprobe: str = "modprobe", timeout: float = 30.0) -> None:
        self.modprobe = modprobe
        self.timeout = timeout

    def load(self, module: str) -> None:
        self._run([], module)

    def unload(self, module: str) -> None:
        self._run(["-r"], module)

    def _run(self, flags: list[str], module: str) -> None:
        if not MODULE_RE.fullmatch(module):
            raise errors.InvalidArguments(f"refusing to load or unload module {module!r}")
        try:
            proc = subprocess.run(
                [self.modprobe, *flags, "--", module],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise errors.Unavailable(f"could not run modprobe for {module}: {e}") from None
        if proc.returncode != 0:
            raise errors.OseError(
                f"modprobe {module} failed ({proc.returncode}): {proc.stderr.strip()[:200]}"
            )


def module_exists(target: TargetRoot, proc: TargetRoot, module: str) -> bool:
    """Whether lib/modules/<running release> lists the module (loadable or built in)."""
    if not MODULE_RE.fullmatch(module):
        return False
    release = read_attr(proc, "sys/kernel/osrelease")
    if release is None or not RELEASE_RE.fullmatch(release):
        return False
    pattern = re.compile(rf"(^|/){re.escape(module)}\.ko(\.[a-z]+)?(:|$)", re.MULTILINE)
    for index in ("modules.dep", "modules.builtin"):
        try:
            text = target.read_bytes(f"lib/modules/{release}/{index}", limit=16 << 20)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if pattern.search(text.decode("utf-8", "replace")):
            return True
    return False


class CongestionKnob(SysctlKnob):
    """net.ipv4.tcp_congestion_control, which may need its module loaded first."""

    def __init__(self, proc: TargetRoot, target: TargetRoot, loader: ModuleLoader) -> None:
        super().__init__(proc, "net.ipv4.tcp_congestion_control")
        self.target_root = target
        self.loader = loader

    def available(self) -> list[str]:
        text = read_attr(self.proc, "sys/net/ipv4/tcp_available_congestion_control")
        return [] if text is None else text.split()

    def not_applicable_reason(self, target: str) -> str | None:
        if target in self.available():
            return None
        if module_exists(self.target_root, self.proc, f"tcp_{target}"):
            return None  # loaded on apply
        return (
            f"congestion control {target!r} is not available on this kernel and no "
            f"tcp_{target} module exists (available: {' '.join(self.available()) or 'none'})"
        )

    def write(self, value: str) -> None:
        if value not in self.available():
            self.loader.load(f"tcp_{value}")
        super().write(value)

    def allowed(self) -> list[str] | None:
        text = read_attr(self.proc, ALLOWED)
        return None if text is None else text.split()

    def capture(self) -> dict[str, Any]:
        # What was available before, so a revert can unload what apply loaded; and what
        # unprivileged sockets may choose, because setting the default also allows it
        # (the kernel marks the new default non-restricted) and a revert must undo that.
        return {"value": self.read(), "available": self.available(), "allowed": self.allowed()}

    def restore(self, saved: dict[str, Any]) -> None:
        super().restore(saved)
        before = set(saved.get("available", []))
        for name in self.available():
            if name not in before and MODULE_RE.fullmatch(f"tcp_{name}"):
                # Best effort: a module still used by open sockets stays loaded.
                with contextlib.suppress(errors.OseError):
                    self.loader.unload(f"tcp_{name}")
        want = self._allowed_wanted(saved)
        if want is not None and set(self.allowed() or []) != set(want):
            write_attr(self.proc, ALLOWED, " ".join(want))

    def _allowed_wanted(self, saved: dict[str, Any]) -> list[str] | None:
        """The saved allowed list, minus names whose module is gone (older journals
        did not save it: None)."""
        allowed = saved.get("allowed")
        if not isinstance(allowed, list) or self.allowed() is None:
            return None
        available = set(self.available())
        return [str(n) for n in allowed if n in available]

    def is_restored(self, saved: dict[str, Any]) -> bool:
        want = self._allowed_wanted(saved)
        return self.same(self.read(), str(saved.get("value"))) and (
            want is None or set(self.allowed() or []) == set(want))
