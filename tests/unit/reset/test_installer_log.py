"""Without a captured baseline, "factory" is the distribution's high-priority packages
and those the installer's log lists (issue 5). Truth: the installer status file the
test plants (debian-installer's copy of dpkg's status at the end of an install)."""

from __future__ import annotations

from pathlib import Path

from oseprovd.reset.models import Selection
from tests.unit.reset.livedin import make_rig

INSTALLER_STATUS = """Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4

Package: hello
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 2.10-3

Package: libfoo1
Status: deinstall ok config-files
Priority: optional
Architecture: amd64
Version: 1.0
"""


def test_packages_the_installer_installed_are_factory(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    # without the log: hello (optional, manual) is not factory and medium removes it
    before = rig.engine.preview(Selection(profile="medium"))
    assert [c.name for c in before.analysis.package_changes] == ["hello"]
    assert "hello" not in {p.name for p in rig.engine.baseline().packages}

    log = rig.root / "var/log/installer/status"
    log.parent.mkdir(parents=True)
    log.write_text(INSTALLER_STATUS)
    base = rig.engine.baseline()
    assert base.source == "distribution"
    names = {p.name for p in base.packages}
    assert "hello" in names  # the installer installed it
    assert "libfoo1" not in names  # config-files only in the log: not installed by it
    assert {"base-files", "apt"} <= names  # high priority, log or not
    plan = rig.engine.preview(Selection(profile="medium"))
    assert plan.analysis.package_changes == ()
    assert any("installer's log" in n for n in plan.analysis.notes)


def test_a_symlinked_installer_log_is_not_read(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    elsewhere = tmp_path / "elsewhere-status"
    elsewhere.write_text(INSTALLER_STATUS)
    (rig.root / "var/log/installer").mkdir(parents=True)
    (rig.root / "var/log/installer/status").symlink_to(elsewhere)
    assert "hello" not in {p.name for p in rig.engine.baseline().packages}
