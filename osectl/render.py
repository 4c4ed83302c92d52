"""Human output (rich tables, progress bars) or pure JSON on stdout; one switch."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from osectl.errors import CliError


def _human_time(ts: Any) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def _human_bytes(n: Any) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _percent(v: Any) -> str:
    return f"{float(v) * 100:.0f}%"


FORMATTERS = {"time": _human_time, "bytes": _human_bytes, "percent": _percent}


class Output:
    def __init__(self, as_json: bool, color: bool) -> None:
        self.as_json = as_json
        self.color = color
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console  # only human output pays for rich

            self._console = Console(no_color=not self.color, highlight=False,
                                    soft_wrap=False)
        return self._console

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def json_text(self, text: str) -> None:
        """JSON someone else serialized the way json() does (sorted keys), as is."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def record(self, value: dict[str, Any], title: str,
               fields: Sequence[tuple[str, str, str | None]]) -> None:
        """A key/value table; fields are (key, label, formatter)."""
        if self.as_json:
            self.json(value)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, label, fmt in fields:
            if key in value:
                # Text, not str: values come from the machine ("[/x]" is not markup).
                table.add_row(label, Text(_fmt(value[key], fmt)))
        self.console.print(table)

    def table(self, rows: list[dict[str, Any]], title: str,
              columns: Sequence[tuple[str, str, str | None]], empty: str) -> None:
        if self.as_json:
            self.json(rows)
            return
        if not rows:
            self.console.print(empty)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for _, label, _ in columns:
            table.add_column(label)
        for row in rows:
            table.add_row(*(Text(_fmt(row.get(key, ""), fmt)) for key, _, fmt in columns))
        self.console.print(table)

    def message(self, text: str, data: dict[str, Any] | None = None) -> None:
        if self.as_json:
            self.json(data if data is not None else {"message": text})
        else:
            self.console.print(text, markup=False)

    def error(self, err: CliError) -> None:
        if self.as_json:
            self.json({"error": {"name": err.name, "message": err.message,
                                 "exit_code": err.exit_code}})
        else:
            # Plain stderr without rich: errors must show even when rich is unusable.
            sys.stderr.write(f"osectl: {err.message}\n")

    def progress(self, updates: Iterable[dict[str, Any]], label: str) -> dict[str, Any]:
        """Follow a job's property updates with a progress bar; returns the last state."""
        last: dict[str, Any] = {}
        if self.as_json:
            for props in updates:
                last = props
                self.json({"State": props.get("State"), "Progress": props.get("Progress"),
                           "StatusText": props.get("StatusText")})
            return last
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[status]}"), console=self.console,
                      transient=False) as bar:
            task = bar.add_task(label, total=1.0, status="")
            for props in updates:
                last = props
                bar.update(task, completed=float(props.get("Progress", 0.0)),
                           status=str(props.get("StatusText", "")))
        return last


def _fmt(value: Any, fmt: str | None) -> str:
    if fmt is not None:
        return FORMATTERS[fmt](value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
