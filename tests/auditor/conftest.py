"""Fixtures for the auditor's reports: the scenario of scenario.py in a fresh store, on SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from axis.store import Store, open_store
from tests.auditor.scenario import CALENDAR, Clock, Scenario
from tests.store.conftest import backend, migrated_url, pg_template  # noqa: F401 - fixtures reused


@pytest.fixture
def scenario_url(migrated_url: str) -> Iterator[str]:  # noqa: F811
    """The database URL of a store holding the scenario."""
    clock = Clock()
    store: Store = open_store(migrated_url, clock=clock, create=True)
    try:
        Scenario(store, clock).build()
    finally:
        store.close()
    yield migrated_url


@pytest.fixture
def calendar_file(tmp_path: Path) -> Path:
    path = tmp_path / "calendar.txt"
    path.write_text(CALENDAR)
    return path
