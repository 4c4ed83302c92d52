"""system/btrfs.py finds libbtrfsutil's bindings: the venv's, else Debian's module file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.components import REPO_ROOT, missing

BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "btrfsutil":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from oseprovd.system import btrfs
print(btrfs.available(), btrfs._btrfsutil.__file__ if btrfs.available() else "")
"""


def test_falls_back_to_debian_module() -> None:
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    if not list(Path("/usr/lib/python3/dist-packages").glob(f"btrfsutil.{tag}-*.so")):
        missing("python3-btrfsutil (Debian) is not installed")
    out = subprocess.run([sys.executable, "-c", BLOCKED], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == "True"
    assert out[1].startswith("/usr/lib/python3/dist-packages/btrfsutil.")
