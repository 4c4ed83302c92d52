"""`python -m oseprovd.discovery [SUBSET...]`: one scan, printed as JSON.

For the Ansible local-facts script and the benchmark, which want the engine without the
daemon. Sensitive fields are left out unless --sensitive is given (and you are root).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oseprovd.discovery import DiscoveryEngine, SystemRoots, redact
from oseprovd.errors import OseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oseprovd.discovery")
    parser.add_argument("subset", nargs="*", default=["all"],
                        help="collectors or groups, Ansible style: all, min, hardware, !name")
    parser.add_argument("--root", type=Path, default=Path("/"), help="target root to read")
    parser.add_argument("--timeout", type=float, default=None, help="cap per collector (s)")
    parser.add_argument("--sensitive", action="store_true",
                        help="include serial numbers, UUIDs and MAC addresses")
    args = parser.parse_args(argv)
    engine = DiscoveryEngine(SystemRoots(target=args.root))
    try:
        report = engine.collect_sync(args.subset, args.timeout)
    except OseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.sensitive:
        report = redact(report)
    sys.stdout.write(report.model_dump_json(indent=2, exclude_none=False) + "\n")
    return 0 if not report.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
