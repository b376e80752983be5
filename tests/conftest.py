"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import inference_farm.api
from inference_farm.settings import Settings, load_settings

# A port on which nothing listens: Redis checks against it fail at once.
CLOSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings on an embedded SQLite registry in tmp_path, with an unreachable broker."""
    return load_settings(env={}, data_dir=tmp_path, broker_url=CLOSED_REDIS)


@pytest.fixture(autouse=True)
def _close_apps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every API app a test made: each starts threads that would outlive it."""
    made: list[inference_farm.api.Farm] = []

    class Recorded(inference_farm.api.Farm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(inference_farm.api, "Farm", Recorded)
    yield
    for farm in made:
        farm.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration, so `-m "not integration"` runs the rest."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
