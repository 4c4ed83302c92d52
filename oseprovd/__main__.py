"""oseprovd's command line: flags only; app.py builds everything."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from oseprovd import __version__
from oseprovd.errors import OseError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="oseprovd", description="OSE provisioning daemon (org.ose.Provisioning1)")
    p.add_argument("--bus", help="system (default), session, or a D-Bus address")
    p.add_argument("--root", type=Path, help="target root the services act on (default /)")
    p.add_argument("--proc-root", type=Path, help="procfs to read and tune (default /proc)")
    p.add_argument("--sys-root", type=Path, help="sysfs to read and tune (default /sys)")
    p.add_argument("--state-dir", type=Path, help="state directory (default /var/lib/oseprovd)")
    p.add_argument("--config", type=Path,
                   help="configuration file (default /etc/ose/oseprovd.toml)")
    p.add_argument("--snapshot-timer", type=float, metavar="SECONDS",
                   help="seconds between timeline snapshots and cleanup (0: off; default 3600)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--apply-tuning", action="store_true",
                   help="apply the active tuning profile and exit (at boot, without D-Bus)")
    p.add_argument("--version", action="version", version=f"oseprovd {__version__}")
    # Exports org.ose.Test1 (a demo job) for the test suite; never used in production.
    p.add_argument("--test-interface", action="store_true", default=None,
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def without_tls() -> None:
    """The daemon speaks no TLS (its one HTTP request, a cloud metadata probe, goes to a
    link-local address in plain HTTP). asyncio imports ssl whenever it can, and that
    maps OpenSSL: ~4 MiB resident for nothing. A None entry in sys.modules makes
    `import ssl` fail, which asyncio, urllib and http.client handle as a Python built
    without ssl."""
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]


def without_plugins() -> None:
    """No pydantic plugins: a root daemon does not let any installed package hook into
    the validation of its requests, and looking for them reads every installed
    distribution's metadata at start-up."""
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    without_tls()
    without_plugins()
    # Imported after parsing so that --help and --version stay fast.
    from oseprovd.app import StartupError, apply_tuning_at_boot, run
    from oseprovd.config import load_settings
    from oseprovd.log import setup_logging

    try:
        settings = load_settings(args.config, {
            "bus": args.bus, "root": args.root, "state_dir": args.state_dir,
            "proc_root": args.proc_root, "sys_root": args.sys_root,
            "log_level": args.log_level, "test_interface": args.test_interface,
            "snapshot_timer_seconds": args.snapshot_timer,
        })
    except OseError as exc:  # a bad config file is a usage error, like a bad flag
        print(f"oseprovd: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.log_level)
    try:
        code = apply_tuning_at_boot(settings) if args.apply_tuning else run(settings)
    except (StartupError, OseError) as exc:
        print(f"oseprovd: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        logging.getLogger("oseprovd").exception("oseprovd stopped on an unexpected error")
        print("oseprovd: stopped on an unexpected error; see the log above", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
