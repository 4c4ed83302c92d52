"""The data behind `osectl reset select`, free of any terminal: a plan's items as a tree
(class -> rule -> directories -> items), what is ticked, the totals, and the selection
(`exclude_paths`) that asks the daemon for a plan of just the ticked items.

The daemon's rules (docs/reset.md) this has to mirror: `exclude_paths` are prefixes
(a path and everything under it), and a directory is an item only when everything
under it is, so a directory with anything unticked below it drops out of the plan too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

CLASS_ORDER = ("system", "app", "user", "cache", "log", "temp")
MAX_EXCLUDES = 256  # the daemon's limit on exclude_paths


class SelectionError(ValueError):
    """The ticks cannot be said as a selection the daemon accepts."""


@dataclass(frozen=True)
class Item:
    path: str  # relative to the target root; bad UTF-8 as surrogate escapes
    bytes: int
    cls: str
    rule: str
    kind: str = "file"
    risk: str = "safe"


def item_from_dbus(d: dict[str, Any]) -> Item:
    """A GetPlanItems row; the exact name from `path_bytes` when it is there."""
    raw = d.get("path_bytes")
    path = os.fsdecode(bytes(raw)) if raw else str(d.get("path", ""))
    return Item(path=path.strip("/"), bytes=int(d.get("bytes", 0)), cls=str(d.get("cls", "")),
                rule=str(d.get("rule", "")), kind=str(d.get("kind", "file")),
                risk=str(d.get("risk", "safe")))


@dataclass
class Totals:
    count: int = 0
    bytes: int = 0

    def add(self, item: Item) -> None:
        self.count += 1
        self.bytes += item.bytes


@dataclass(eq=False)
class Node:
    """One line of the tree: a class, a rule, or a path (a directory or an item)."""
    label: str
    kind: str  # "class", "rule" or "path"
    path: str = ""  # for "path" nodes: the full relative path
    item: int | None = None  # index of the item at exactly this path, if any
    children: dict[str, Node] = field(default_factory=dict)
    parent: Node | None = None
    members: list[int] = field(default_factory=list)  # every item index at or below
    bytes: int = 0  # of those items

    def sorted_children(self) -> list[Node]:
        if self.kind == "root":
            order = {c: i for i, c in enumerate(CLASS_ORDER)}
            return sorted(self.children.values(), key=lambda n: (order.get(n.label, 99),
                                                                 n.label))
        return [self.children[k] for k in sorted(self.children)]


class SelectModel:
    def __init__(self, items: Iterable[Item]) -> None:
        self.items: list[Item] = list(items)
        self.ticked: list[bool] = [True] * len(self.items)
        self.root = Node("plan", "root")
        # Every directory prefix of every item, each string made once: `_prefixes[i]` runs
        # from the top ("home") down to the item's own path.
        names: dict[str, str] = {}
        self._prefixes: list[tuple[str, ...]] = []
        for item in self.items:
            parts = item.path.split("/")
            acc = ""
            chain = []
            for part in parts:
                acc = f"{acc}/{part}" if acc else part
                chain.append(names.setdefault(acc, acc))
            self._prefixes.append(tuple(chain))
        self._at_or_below: dict[str, int] = {}  # prefix -> items at or below it
        for prefixes in self._prefixes:
            for p in prefixes:
                self._at_or_below[p] = self._at_or_below.get(p, 0) + 1
        self._off: dict[str, int] = {}  # prefix -> unticked items at or below (if any)
        by_path = {item.path: i for i, item in enumerate(self.items)}
        self._above: dict[int, list[int]] = {}  # item -> the directory items above it
        self._below: dict[int, list[int]] = {}  # directory item -> every item under it
        for i, prefixes in enumerate(self._prefixes):
            for p in prefixes[:-1]:
                up = by_path.get(p)
                if up is not None:
                    self._above.setdefault(i, []).append(up)
                    self._below.setdefault(up, []).append(i)
        self._build()

    # --- the tree -----------------------------------------------------------------------

    def _build(self) -> None:
        for i, item in enumerate(self.items):
            cls = self._child(self.root, item.cls or "-", "class")
            rule = self._child(cls, item.rule or "-", "rule")
            node = rule
            for prefix in self._prefixes[i]:
                node = self._child(node, prefix.rpartition("/")[2], "path", prefix)
            node.item = i
        self._members(self.root)
        for cls in self.root.children.values():
            for rule in cls.children.values():
                for child in list(rule.children.values()):
                    self._collapse(rule, child)

    @staticmethod
    def _child(parent: Node, key: str, kind: str, path: str = "") -> Node:
        node = parent.children.get(key)
        if node is None:
            node = Node(key, kind, path, parent=parent)
            parent.children[key] = node
        return node

    def _members(self, node: Node) -> list[int]:
        # Iterative post-order: deep trees must not hit the recursion limit.
        stack: list[tuple[Node, bool]] = [(node, False)]
        while stack:
            n, done = stack.pop()
            if done:
                n.members = ([n.item] if n.item is not None else [])
                for c in n.children.values():
                    n.members += c.members
                n.bytes = sum(self.items[i].bytes for i in n.members)
                continue
            stack.append((n, True))
            stack.extend((c, False) for c in n.children.values())
        return node.members

    def _collapse(self, parent: Node, node: Node) -> None:
        """A chain of directories that are not items and have one child each shows as
        one line (var/cache/apt/archives). Iterative: paths can be deep."""
        stack = [(parent, node)]
        while stack:
            parent, node = stack.pop()
            while node.item is None and len(node.children) == 1:
                (only,) = node.children.values()
                only.label = f"{node.label}/{only.label}"
                only.parent = parent
                del parent.children[node.label]
                parent.children[only.label] = only
                node = only
            stack.extend((node, c) for c in node.children.values())

    def walk(self, node: Node | None = None) -> Iterator[Node]:
        stack = [node or self.root]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())

    # --- ticks --------------------------------------------------------------------------

    def state(self, node: Node) -> str:
        """"all", "none" or "some" of the node's items ticked."""
        on = sum(1 for i in node.members if self.ticked[i])
        return "all" if on == len(node.members) else "none" if on == 0 else "some"

    def set(self, node: Node, on: bool) -> None:
        """Tick or untick everything at and below `node`. An unticked directory item
        must have nothing ticked under it, whatever rule that belongs to, since no
        exclusion keeps a directory and still removes what is in it; so unticking one
        unticks its contents, and ticking an item ticks the directory items above it
        (a ticked directory with something unticked below simply stays)."""
        for i in node.members:
            self._tick(i, on)
            for j in (self._above if on else self._below).get(i, ()):
                self._tick(j, on)

    def _tick(self, i: int, on: bool) -> None:
        if self.ticked[i] == on:
            return
        self.ticked[i] = on
        step = -1 if on else 1
        for p in self._prefixes[i]:
            left = self._off.get(p, 0) + step
            if left:
                self._off[p] = left
            else:
                del self._off[p]

    def toggle(self, node: Node) -> None:
        """Fully ticked -> nothing ticked; otherwise everything below ticked."""
        self.set(node, self.state(node) != "all")

    def node_bytes(self, node: Node) -> int:
        return node.bytes

    # --- selection and totals -----------------------------------------------------------

    def exclude_paths(self) -> list[str]:
        """The fewest prefixes that cover every unticked item and no ticked one: the
        highest directories of the path tree (over all classes and rules, since one
        rule's tree can sit inside another's) with nothing ticked below."""
        out = []
        for path, off in self._off.items():
            if off != self._at_or_below[path]:
                continue
            parent = path.rpartition("/")[0]
            if parent and self._off.get(parent) == self._at_or_below[parent]:
                continue  # its parent is excluded already
            out.append(path)
        return sorted(out)

    def selection(self, base: dict[str, Any]) -> dict[str, Any]:
        """The Preview selection of the ticked items: `base` plus the exclusions."""
        excludes = self.exclude_paths()
        for p in excludes:
            try:
                p.encode("utf-8")
            except UnicodeEncodeError:
                raise SelectionError(
                    f"{p.encode('utf-8', 'backslashreplace').decode()} is not valid UTF-8 "
                    "and cannot be left out on its own: untick its directory") from None
        excludes = sorted(set(base.get("exclude_paths") or []) | set(excludes))
        if len(excludes) > MAX_EXCLUDES:
            raise SelectionError(f"{len(excludes)} separate paths left out (at most "
                                 f"{MAX_EXCLUDES}): untick whole directories instead")
        out = dict(base)
        if excludes:
            out["exclude_paths"] = excludes
        return out

    def kept(self) -> list[bool]:
        """Which items a plan made with `selection` will hold: those with nothing
        unticked at or below them (an unticked child drops its directory)."""
        return [self.ticked[i] and item.path not in self._off
                for i, item in enumerate(self.items)]

    def totals(self, which: str = "before") -> tuple[Totals, dict[str, Totals]]:
        """Overall and per-class totals: "before" = the whole plan, "after" = what the
        plan of the current ticks will remove."""
        keep = self.kept() if which == "after" else [True] * len(self.items)
        total = Totals()
        by_class: dict[str, Totals] = {}
        for item, k in zip(self.items, keep, strict=True):
            if k:
                total.add(item)
                by_class.setdefault(item.cls, Totals()).add(item)
        return total, by_class
