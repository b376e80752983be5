"""An API app's close() ends the thread it started: the queue watch."""

from __future__ import annotations

import threading

from inference_farm.api import create_app
from inference_farm.settings import Settings


def test_close_ends_the_threads_the_app_started(farm_settings: Settings) -> None:
    before = set(threading.enumerate())
    farm = create_app(farm_settings).extensions["farm"]
    assert farm.queues.serves("farm.model.nobody") is False  # starts the queue watch
    started = set(threading.enumerate()) - before
    assert {thread.name for thread in started} == {"queue-watch"}
    farm.close()
    for thread in started:
        thread.join(timeout=30)
    assert [thread.name for thread in started if thread.is_alive()] == []
    farm.close()  # a second close is harmless
