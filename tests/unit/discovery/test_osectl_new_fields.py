"""osectl discover shows the DIMMs, other managers' packages, systemd's unit states and
the pending security updates when the daemon's report has them."""

from __future__ import annotations

import pytest

from osectl import discover
from osectl.render import Output


def test_new_fields_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(False, False)
    discover._memory(out, {"total_bytes": 1 << 30, "dimm_table": "read", "dimms": [
        {"locator": "DIMM A1", "installed": True, "size_bytes": 16 << 30, "type": "DDR4",
         "speed_mts": 3200}, {"locator": "DIMM B1", "installed": False}]})
    discover._packages(out, {"manager": None, "packages": [], "other_managers": {
        "rpm": {"state": "read"}, "rpm_packages": [{"name": "a"}, {"name": "b"}],
        "flatpak": {"state": "error", "error": "flatpak gave no answer within 8s"},
        "snap": {"state": "absent"}}})
    discover._services(out, {"systemd_running": True, "runtime_only_units": [{}],
                             "systemd_units": [{"name": "web.service", "state": "enabled",
                                                "active_state": "active",
                                                "sub_state": "running"}]})
    discover._security(out, {"security_updates": {"checked": True, "updates": [{}, {}, {}]}})
    text = capsys.readouterr().out
    assert "DIMM A1" in text and "16.0 GiB" in text and "empty" in text
    assert "rpm: 2 packages" in text and "flatpak: could not be read" in text
    assert "snap" not in text
    assert "1 of them active, 1 more units" in text and "running" in text
    assert "Pending security updates: 3" in text
