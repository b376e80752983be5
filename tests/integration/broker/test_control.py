"""Broadcasts to the workers on a real Redis: more at once than kombu's pool holds all end."""

from __future__ import annotations

import threading

from inference_farm.broker import control
from inference_farm.broker.app import create_celery
from inference_farm.settings import Settings


def test_more_broadcasts_at_once_than_the_pool_holds_all_finish(farm_settings: Settings) -> None:
    # Celery's own broadcasts, this many at once, hung for good: each held a pooled
    # connection while its producer waited for another.
    celery = create_celery(farm_settings)
    many = celery.conf.broker_pool_limit + 2
    answers: list[object] = []

    def ask(index: int) -> None:
        if index % 2:
            answers.append(control.call(celery, "broadcast", "farm_cache", reply=True, timeout=0.2))
        else:
            answers.append(control.inspect(celery, "active_queues", timeout=0.2))

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(many)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [thread for thread in threads if thread.is_alive()] == []
    # No worker runs, so every ask ends with no answer (and none with an error).
    assert sorted(map(repr, answers)) == ["[]"] * (many // 2) + ["{}"] * (many // 2)
