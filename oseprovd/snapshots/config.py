"""Snapshot configs: one TOML file per config in a directory (/etc/ose/snapshots.d in
production), named `<config>.toml`; and a default found from the mounts."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.ids import CONFIG_NAME
from oseprovd.snapshots.models import SnapshotConfig


def load_configs(etc_dir: Path) -> dict[str, SnapshotConfig]:
    configs: dict[str, SnapshotConfig] = {}
    if not etc_dir.is_dir():
        return configs
    for path in sorted(etc_dir.glob("*.toml")):
        name = path.stem
        if not CONFIG_NAME.fullmatch(name):
            raise InvalidArguments(f"{path}: the file name must be a config name "
                                   "(a-z, 0-9, _; starting with a letter)")
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArguments(f"{path}: {exc}") from None
        if data.setdefault("name", name) != name:
            raise InvalidArguments(f"{path}: name = {data['name']!r} differs from the file name")
        try:
            configs[name] = SnapshotConfig.model_validate(data)
        except ValidationError as exc:
            raise InvalidArguments(f"{path}: {exc}") from None
    return configs


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def default_configs(mountinfo: str,
                    state_dir: Path = Path("/var/lib/ose")) -> dict[str, SnapshotConfig]:
    """With no config files: the root filesystem, by btrfs when it is btrfs (its root
    subvolume, rolled back by changing the default subvolume), else by the copy store."""
    root_fstype = ""
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" in fields and len(fields) > 4 and _unescape(fields[4]) == "/":
            root_fstype = fields[fields.index("-") + 1]  # the last "/" mount wins
    if root_fstype == "btrfs":
        cfg = SnapshotConfig(name="root", backend="btrfs", path=Path("/"),
                             snapshot_dir=Path("/.ose-snapshots"), root_subvolume=True)
    else:
        cfg = SnapshotConfig(name="root", backend="copy", path=Path("/"),
                             snapshot_dir=state_dir / "snapshots" / "root")
    return {cfg.name: cfg}


def under_root(config: SnapshotConfig, root: Path, rebase_snapshot_dir: bool = True
               ) -> SnapshotConfig:
    """The config with its paths inside the target root (`--root`): a config says
    `/srv/data` and means `<root>/srv/data`. With root "/" it is unchanged."""
    if root == Path("/"):
        return config

    def inside(p: Path) -> Path:
        return root.joinpath(*p.parts[1:])

    update = {"path": inside(config.path)}
    if rebase_snapshot_dir:
        update["snapshot_dir"] = inside(config.snapshot_dir)
    return config.model_copy(update=update)
