"""The real polkitd on a private system bus, with the project's policy and test rules.

polkitd reads actions from /usr/share/polkit-1/actions and rules from
/etc/polkit-1/rules.d (and /usr/share/polkit-1/rules.d). To show it our files without
writing there, it runs in a private mount namespace (unshare) where a temp actions dir
(the host's actions plus ours) and a temp rules dir are bind-mounted over those two.
polkitd starts as root and drops to the `polkitd` user, so the temp dirs are world
readable (0755/0644) under a world-traversable /tmp dir.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.harness import logs
from tests.harness.busclient import wait_for_name_sync
from tests.harness.components import POLKITD, UNSHARE, repo_file, require, require_root
from tests.harness.process import ManagedProcess
from tests.harness.users import ADMIN_GROUP

POLKIT_NAME = "org.freedesktop.PolicyKit1"
HOST_ACTIONS = Path("/usr/share/polkit-1/actions")
PROJECT_POLICY = ("polkit", "org.ose.provisioning.policy")
NS_WRAPPER = Path(__file__).with_name("polkit_ns.py")

# Members of the test admin group get every OSE action without authentication.
DEFAULT_RULES = f"""// OSE test harness: grant every org.ose.* action to group {ADMIN_GROUP}.
polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.ose.") === 0 && subject.isInGroup("{ADMIN_GROUP}")) {{
        return polkit.Result.YES;
    }}
    return polkit.Result.NOT_HANDLED;
}});
"""


class PolkitDaemon(ManagedProcess):
    """`with PolkitDaemon(bus.address) as pk:` -> pk.pid, pk.log_path, pk.log_text().

    Actions: the host's, the project's policy and `extra_policy_files`. Rules: `rules_js`
    (default: group osetest-admin gets every org.ose.* action; None: no rules file).
    """

    def __init__(
        self,
        bus_address: str,
        extra_policy_files: Sequence[Path] = (),
        rules_js: str | None = DEFAULT_RULES,
        *,
        debug: bool = True,
        startup_timeout: float = 15.0,
    ) -> None:
        self.bus_address = bus_address
        # Ours always; extra files (e.g. a test-only action) beside it.
        self._policies = [repo_file(*PROJECT_POLICY), *extra_policy_files]
        self._rules = rules_js
        self._debug = debug
        self._timeout = startup_timeout
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _prepare(self) -> tuple[Path, Path]:
        self.dir = Path(tempfile.mkdtemp(prefix="ose-polkit-"))
        self.dir.chmod(0o755)  # polkitd reads these as user polkitd
        actions, rules = self.dir / "actions", self.dir / "rules.d"
        actions.mkdir(mode=0o755)
        rules.mkdir(mode=0o755)
        if HOST_ACTIONS.is_dir():
            for src in HOST_ACTIONS.glob("*.policy"):
                shutil.copyfile(src, actions / src.name)
        for src in self._policies:
            shutil.copyfile(src, actions / src.name)
        if self._rules is not None:
            (rules / "10-osetest.rules").write_text(self._rules)
        for f in [*actions.iterdir(), *rules.iterdir()]:
            f.chmod(0o644)
        return actions, rules

    def start(self) -> PolkitDaemon:
        require_root("polkitd and its mount namespace need root")
        polkitd = require(POLKITD, "authorization tests run the real polkitd")
        unshare = require(UNSHARE, "polkitd sees the test policy in a private mount namespace")
        actions, rules = self._prepare()
        assert self.dir is not None
        self.log_path = self.dir / "polkitd.log"
        argv = [unshare, "--mount", "--propagation", "private", "--",
                sys.executable, str(NS_WRAPPER), str(actions), str(rules), "--", polkitd]
        if not self._debug:
            argv.append("--no-debug")
        env = {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        logs.register("polkitd", self.log_path)
        try:
            # unshare and the wrapper exec, so the pid is polkitd's: wait for *its* name.
            wait_for_name_sync(self.bus_address, POLKIT_NAME, self._timeout,
                               pid=self.proc.pid, died=self._died)
            self._check_rules_loaded()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_rules_loaded(self) -> None:
        """polkitd only logs an unreadable rules dir or a broken rules file and carries on
        without them, which would turn every grant into a silent denial."""
        if not self._debug:
            return
        bad = [line for line in self.log_text().splitlines()
               if "Error" in line and ("rules" in line or "script" in line.lower())]
        if bad:
            raise RuntimeError("polkitd did not load the test rules:\n" + "\n".join(bad)
                               + f"\n--- full log ---\n{self.log_text()}")

    def _died(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is None:
            return None
        return f"polkitd exited with {self.proc.returncode}:\n{self.log_text()}"


