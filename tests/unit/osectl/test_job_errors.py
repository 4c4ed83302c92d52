"""A job that ends in an error exits as a call failing the same way would (osectl(1),
EXIT STATUS), with the error's name as it is on the bus."""

from __future__ import annotations

import pytest

from osectl.errors import from_dbus, from_job


@pytest.mark.parametrize(("short", "name", "code"), [
    ("NotFound", "org.ose.Error.NotFound", 3),
    ("InvalidArgs", "org.freedesktop.DBus.Error.InvalidArgs", 2),
    ("AccessDenied", "org.freedesktop.DBus.Error.AccessDenied", 4),
    ("Busy", "org.ose.Error.Busy", 1),
    ("Interrupted", "org.ose.Error.Interrupted", 1),
    ("", "org.ose.Error.Failed", 1),
])
def test_a_failed_job_exits_by_its_kind(short: str, name: str, code: int) -> None:
    err = from_job(short, "reset execute failed: gone")
    assert (err.name, err.exit_code, err.message) == (name, code, "reset execute failed: gone")
    # The same kind of failure from a call, not a job, exits alike.
    assert from_dbus(name, "x").exit_code == code
