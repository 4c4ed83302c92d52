"""Reset tests build sandbox roots with files of several owners: they need root
(skipped locally without it, a failure under CI=true, as every missing component)."""

from __future__ import annotations

import pytest

from tests.harness.components import require_root


@pytest.fixture(autouse=True)
def _root_needed() -> None:
    require_root("reset tests chown files in sandbox roots")
