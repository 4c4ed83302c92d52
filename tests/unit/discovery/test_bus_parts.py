"""The pieces under org.ose.Discovery1 that need no bus: kernel uevent parsing, report
storage with retention, what each Get* selects."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from oseprovd.bus.discovery import GET_SUBSETS, check_report_id, only, plain
from oseprovd.discovery import DiscoveryEngine
from oseprovd.errors import InvalidArguments
from oseprovd.store.db import Store
from oseprovd.store.reports import ReportRepository
from oseprovd.system.uevent import parse

ADD_LOOP = (b"add@/devices/virtual/block/loop9\0ACTION=add\0DEVPATH=/devices/virtual/block/"
            b"loop9\0SUBSYSTEM=block\0MAJOR=7\0MINOR=9\0DEVNAME=loop9\0DEVTYPE=disk\0SEQNUM=5\0")


def test_kernel_uevent_is_parsed() -> None:
    event = parse(ADD_LOOP)
    assert event is not None
    assert (event.action, event.subsystem, event.device) == ("add", "block", "loop9")


def test_event_without_a_node_is_named_by_its_path() -> None:
    event = parse(b"change@/devices/x/power_supply/BAT0\0ACTION=change\0"
                  b"DEVPATH=/devices/x/power_supply/BAT0\0SUBSYSTEM=power_supply\0")
    assert event is not None and event.device == "BAT0"


@pytest.mark.parametrize("data", [
    b"", b"libudev\0\xfe\xed\xca\xfe", b"add@/x\0ACTION=add\0", b"garbage\0ACTION=add",
    b"add@/x\0ACTION=add\0DEVPATH=/x\0",  # no subsystem
])
def test_other_messages_are_ignored(data: bytes) -> None:
    assert parse(data) is None


def test_uevent_socket_can_be_opened() -> None:
    """The daemon's monitor needs this; it works without udevd (root, AF_NETLINK)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
    try:
        sock.bind((0, 1))
    except PermissionError:
        pytest.skip("joining the kernel's uevent group needs privileges here")
    finally:
        sock.close()


def test_reports_are_kept_up_to_the_retention_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    repo = ReportRepository(store, keep=3)
    ids = [repo.add(json.dumps({"n": i}), 1000, ["all"], ["cpu"], [], 1.5) for i in range(5)]
    listed = [s.id for s in repo.summaries()]
    assert listed == ids[:1:-1]  # the newest three, newest first
    assert repo.data(ids[0]) is None
    assert json.loads(repo.data(ids[4]) or "") == {"n": 4}
    assert all(check_report_id(i) == i for i in ids)
    store.close()


def test_reports_are_stored_deflated_and_old_text_rows_still_read(tmp_path: Path) -> None:
    import zlib

    store = Store(tmp_path / "state")
    repo = ReportRepository(store, keep=5)
    text = json.dumps({"packages": [{"name": f"p{i}", "version": "1.0"} for i in range(500)]})
    new = repo.add(text, 0, ["all"], ["packages"], [], 1.0)
    with store.transaction() as conn:  # a row as the daemon wrote it before (text)
        conn.execute("INSERT INTO reports (id, created, caller_uid, subset, collectors, "
                     "failed, duration_ms, data) VALUES ('00000000000000aa', 0, 0, '[]', "
                     "'[]', '[]', 0, ?)", (text,))
        raw = conn.execute("SELECT data FROM reports WHERE id = ?", (new,)).fetchone()[0]
    assert isinstance(raw, bytes) and len(raw) < len(text) / 5
    assert zlib.decompress(raw).decode() == text  # what is on disk, read by hand
    assert repo.data(new) == text and repo.data("00000000000000aa") == text
    store.close()


@pytest.mark.parametrize("bad", ["", "latest", "0123456789ABCDEF", "../x", "0" * 17])
def test_bad_report_ids(bad: str) -> None:
    with pytest.raises(InvalidArguments):
        check_report_id(bad)


def test_each_get_answers_only_its_own_sections() -> None:
    engine = DiscoveryEngine()
    got = {what: engine.resolve(only(engine, wanted)) for what, wanted in GET_SUBSETS.items()}
    assert got["cloud"] == ["virtualization", "cloud"]
    assert got["services"] == ["services"]
    assert got["security"] == ["security"]
    assert set(got["hardware"]) == {"cpu", "memory", "block", "mounts", "nics", "gpus",
                                    "power", "dmi", "virtualization"}
    assert set(got["software"]) == {"os", "packages", "services", "applications"}


def test_plain_drops_none_everywhere() -> None:
    assert plain({"a": None, "b": [1, None, {"c": None, "d": 2}]}) == {"b": [1, {"d": 2}]}
