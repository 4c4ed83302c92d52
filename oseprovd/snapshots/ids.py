"""Strict names: snapshot config names and snapshot ids end up in paths and argv."""

from __future__ import annotations

import re

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.errors import InvalidSnapshotId

CONFIG_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# "<config>-<number>": no "/", no ".", can't start with "-", bounded length.
SNAPSHOT_ID = re.compile(r"([a-z][a-z0-9_]{0,31})-([1-9][0-9]{0,9})")
OP_ID = re.compile(r"[0-9a-f]{16,32}")


def check_config_name(name: str) -> str:
    if not isinstance(name, str) or not CONFIG_NAME.fullmatch(name):
        raise InvalidArguments(
            f"config name {name!r} is not valid: use 1-32 of a-z, 0-9 and _, starting "
            "with a letter"
        )
    return name


def check_snapshot_id(snap_id: str) -> str:
    if not isinstance(snap_id, str) or not SNAPSHOT_ID.fullmatch(snap_id):
        raise InvalidSnapshotId(
            f"snapshot id {snap_id!r} is not valid: ids look like 'root-12'"
        )
    return snap_id


def make_snapshot_id(config: str, number: int) -> str:
    return check_snapshot_id(f"{check_config_name(config)}-{number}")


def split_snapshot_id(snap_id: str) -> tuple[str, int]:
    m = SNAPSHOT_ID.fullmatch(check_snapshot_id(snap_id))
    assert m is not None
    return m.group(1), int(m.group(2))


def check_op_id(op: str) -> str:
    if not isinstance(op, str) or not OP_ID.fullmatch(op):
        raise InvalidArguments(f"operation id {op!r} is not valid")
    return op
