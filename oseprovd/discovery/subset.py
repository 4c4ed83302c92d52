"""Ansible-style subset selection: 'all', 'min', group or collector names, '!name'.

Semantics follow gather_subset: the minimal collectors are always included unless
'!min' is given; '!all' starts from nothing (so '!all' alone means just min); a list of
only exclusions means 'all' minus those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from oseprovd import errors


def resolve(subset: Sequence[str], collectors: Sequence[str], groups: Mapping[str, Iterable[str]],
            minimal: Iterable[str], in_all: Iterable[str] | None = None) -> list[str]:
    """The collector names selected by `subset`, in the order of `collectors`.

    `in_all` is what 'all' means (default: every collector); others must be named.
    """
    everything = set(collectors if in_all is None else in_all)
    expand: dict[str, set[str]] = {name: {name} for name in collectors}
    expand.update({g: set(members) for g, members in groups.items()})
    expand["all"] = everything
    expand["min"] = set(minimal)

    include: set[str] = set()
    exclude: set[str] = set()
    positive = False
    exclude_all = False
    for raw in subset:
        item = raw.strip()
        negate = item.startswith("!")
        name = item[1:] if negate else item
        if name not in expand:
            raise errors.InvalidArguments(
                f"unknown discovery subset {name!r}; choose from: {', '.join(sorted(expand))}")
        if negate and name == "all":
            exclude_all = True
        elif negate:
            exclude |= expand[name]
        else:
            positive = True
            include |= expand[name]
    if not positive and not exclude_all:
        include = set(everything)
    include |= expand["min"]
    selected = include - exclude
    return [name for name in collectors if name in selected]
