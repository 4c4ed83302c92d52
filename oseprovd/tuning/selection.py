"""sysfs attributes that list choices and mark the active one: "[none] mq-deadline kyber"."""

from __future__ import annotations

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import read_attr, write_attr


def parse_selection(text: str) -> tuple[str | None, list[str]]:
    """(active, options) of a bracketed choice list; a bare single word is itself active."""
    active: str | None = None
    options: list[str] = []
    for word in text.split():
        name = word
        if word.startswith("[") and word.endswith("]"):
            name = word[1:-1]
            active = name
        options.append(name)
    if active is None and len(options) == 1:
        active = options[0]
    return active, options


class SelectionKnob(Knob):
    """A knob whose file shows its options with the active one in brackets."""

    def __init__(self, knob_id: str, root: TargetRoot, path: str) -> None:
        super().__init__(knob_id)
        self.root = root
        self.path = path

    def options(self) -> list[str]:
        text = read_attr(self.root, self.path)
        return [] if text is None else parse_selection(text)[1]

    def read(self) -> str | None:
        text = read_attr(self.root, self.path)
        return None if text is None else parse_selection(text)[0]

    def write(self, value: str) -> None:
        write_attr(self.root, self.path, value)

    def not_applicable_reason(self, target: str) -> str | None:
        options = self.options()
        if target not in options:
            return f"{target!r} is not offered here (offered: {' '.join(options) or 'none'})"
        return None
