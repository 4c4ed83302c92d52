"""Applications and runtimes: sandbox entries; on this machine, owners per dpkg -S and
versions as the runtimes print them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from oseprovd.discovery.collectors import applications
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import require_tool, write

DESKTOP = """\
[Desktop Entry]
Type=Application
Name=Editor
Name[fr]=Éditeur
GenericName=Text Editor
Exec=editor %F
Categories=Utility;TextEditor;
Terminal=false

[Desktop Action new-window]
Name=New Window
Exec=editor --new
"""


def test_sandbox_entries_owners_and_package_versions(sandbox: Path) -> None:
    write(sandbox, "usr/share/applications/editor.desktop", DESKTOP)
    write(sandbox, "usr/share/applications/helper.desktop",
          "[Desktop Entry]\nType=Application\nName=Helper\nNoDisplay=true\nExec=helper\n")
    write(sandbox, "usr/share/applications/link.desktop",
          "[Desktop Entry]\nType=Link\nName=Site\nURL=https://example.org\n")
    write(sandbox, "var/lib/flatpak/exports/share/applications/org.example.App.desktop",
          "[Desktop Entry]\nType=Application\nName=App\nExec=flatpak run org.example.App\n")
    write(sandbox, "var/lib/dpkg/info/editor.list", "/usr/share/applications/editor.desktop\n")
    write(sandbox, "var/lib/dpkg/status", "Package: python3\nStatus: install ok installed\n"
          "Architecture: amd64\nVersion: 3.11.2-1+b1\n\n")
    write(sandbox, "usr/bin/python3", "#!/bin/false\n", mode=0o755)
    info = applications.collect(SystemRoots.sandbox(sandbox))
    apps = {a.id: a for a in info.applications}
    assert set(apps) == {"editor.desktop", "helper.desktop", "org.example.App.desktop"}
    editor = apps["editor.desktop"]
    assert (editor.name, editor.exec, editor.categories, editor.package, editor.hidden) == (
        "Editor", "editor %F", ["Utility", "TextEditor"], "editor", False)
    assert apps["helper.desktop"].hidden and apps["helper.desktop"].package is None
    assert apps["org.example.App.desktop"].source == "flatpak"
    (py,) = info.runtimes
    assert (py.name, py.version, py.version_source) == ("python3", "3.11.2-1+b1", "package")


def test_live_owners_match_dpkg_s() -> None:
    require_tool("dpkg")
    info = applications.collect(SystemRoots())
    for app in info.applications:
        if app.source != "dpkg":
            continue
        path = f"/usr/share/applications/{app.id}"
        done = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True,
                              timeout=60, check=False)
        truth = done.stdout.split(":")[0] if done.returncode == 0 else None
        assert app.package == truth, app.id


def test_live_runtime_versions_are_what_they_print() -> None:
    info = applications.collect(SystemRoots())
    specs = {s.name: s for s in applications.RUNTIMES}
    for runtime in info.runtimes:
        if runtime.version_source != "binary" or runtime.binary is None:
            continue
        out = subprocess.run([runtime.binary, *specs[runtime.name].version_args],
                             capture_output=True, text=True, timeout=30, check=False)
        assert runtime.version in out.stdout + out.stderr, runtime.name
