"""What discovery remembers between scans is forgotten when its source changes: a
runtime's version when its binary is replaced, dpkg owners when dpkg's database is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from oseprovd.discovery import SystemRoots
from oseprovd.discovery.collectors.applications import owners
from oseprovd.discovery.fsread import TargetReader
from oseprovd.discovery.probe import program_version
from tests.unit.discovery.helpers import write


def _tool(path: Path, version: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(f"#!/bin/sh\necho 'tool {version}'\n")
    tmp.chmod(0o755)
    os.replace(tmp, path)  # as dpkg replaces a file: a new inode


def test_version_follows_the_binary(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    _tool(tool, "1.2.3")
    live = SystemRoots()
    assert program_version(live, str(tool)) == "1.2.3"
    assert program_version(live, str(tool)) == "1.2.3"  # remembered
    _tool(tool, "2.0.1")
    assert program_version(live, str(tool)) == "2.0.1"


def test_dpkg_owners_follow_the_database(tmp_path: Path) -> None:
    desktop = "/usr/share/applications/editor.desktop"
    write(tmp_path, "var/lib/dpkg/status", "Package: alpha\nStatus: install ok installed\n")
    write(tmp_path, "var/lib/dpkg/info/alpha.list", f"/usr\n{desktop}\n")
    target = TargetReader(tmp_path)
    assert owners(target, {desktop}) == {desktop: "alpha"}
    # dpkg moves the file to another package: new list files, the status rewritten.
    time.sleep(0.01)
    write(tmp_path, "var/lib/dpkg/info/alpha.list", "/usr\n")
    write(tmp_path, "var/lib/dpkg/info/beta.list", f"{desktop}\n")
    write(tmp_path, "var/lib/dpkg/status",
          "Package: alpha\nStatus: install ok installed\n\n"
          "Package: beta\nStatus: install ok installed\n")
    assert owners(target, {desktop}) == {desktop: "beta"}
