"""Fixtures for discovery tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    for sub in ("proc", "sys", "dev", "run", "etc"):
        (tmp_path / sub).mkdir()
    return tmp_path
