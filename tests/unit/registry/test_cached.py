"""The per-process registry caches: expiry, refresh ahead of expiry, and what a refresh sees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference_farm.registry import Database, catalog
from inference_farm.registry.cached import RegistryCache, TtlCache
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import create_key
from inference_farm.registry.migrate import upgrade
from inference_farm.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_claimed_for_refresh_once_past_half_its_life() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(2.0, clock)
    cache.put("k", "v1")
    assert not cache.claim_refresh("k")  # fresh
    clock.now += 1.2
    assert cache.get("k") == "v1"
    assert cache.claim_refresh("k")
    assert not cache.claim_refresh("k")  # one refresh at a time
    cache.put("k", "v2")  # the refresh landed: a full life again
    assert cache.get("k") == "v2" and not cache.claim_refresh("k")
    clock.now += 2.5
    assert cache.get("k") is None and not cache.claim_refresh("k")  # expired: read it yourself
    cache.put("k", "v3")
    clock.now += 1.5
    assert cache.claim_refresh("k")
    cache.discard("k")
    assert cache.get("k") is None and not cache.claim_refresh("k")


@pytest.fixture
def database(sqlite_settings: Settings) -> Iterator[Database]:
    database = Database(sqlite_settings.effective_database_url)
    upgrade(database)
    yield database
    database.engine.dispose()


def _ready(database: Database, name: str) -> None:
    session = database.session()
    model = catalog.ensure_model(session, name)
    catalog.add_version(session, model, "1.0.0", status="ready", signature={}, batchable=True)
    database.remove()


def test_a_refresh_sees_changes_and_drops_what_is_no_longer_served(database: Database) -> None:
    _ready(database, "m")
    cache = RegistryCache(60)
    assert cache.served(database.session(), "m", None).max_batch_size is None
    session = database.session()
    catalog.get_model(session, "m").max_batch_size = 8
    session.commit()
    assert cache.cached_served("m", None).max_batch_size is None  # cached, as promised
    cache.refresh_served(database.session(), "m", None)
    assert cache.cached_served("m", None).max_batch_size == 8
    session = database.session()
    catalog.retire(session, catalog.get_version(session, "m", "1.0.0"))
    session.commit()
    with pytest.raises(Exception, match="m"):  # no version left to serve
        cache.refresh_served(database.session(), "m", None)
    assert cache.cached_served("m", None) is None
    database.remove()


def test_a_refresh_drops_a_revoked_key(database: Database) -> None:
    created = create_key(database.session(), "k", ["infer"])
    cache = RegistryCache(60)
    assert cache.key(database.session(), created.secret) is not None
    cache.refresh_key(database.session(), created.secret)
    assert cache.cached_key(created.secret) is not None
    session = database.session()
    session.merge(created.record).revoked_at = utcnow()
    session.commit()
    cache.refresh_key(database.session(), created.secret)
    assert cache.cached_key(created.secret) is None
    database.remove()
