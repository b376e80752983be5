"""An API app's close() ends the threads it started: the queue watch and the coalescer loop."""

from __future__ import annotations

import asyncio
import threading

from inference_farm.api import create_app
from inference_farm.settings import Settings


def test_close_ends_the_threads_the_app_started(farm_settings: Settings) -> None:
    before = set(threading.enumerate())
    farm = create_app(farm_settings).extensions["farm"]
    assert farm.queues.serves("farm.model.nobody") is False  # starts the queue watch
    assert farm.coalescer.call(asyncio.sleep(0, result="ran")) == "ran"  # and the loop
    started = set(threading.enumerate()) - before
    assert {thread.name for thread in started} == {"queue-watch", "coalescer-loop"}
    farm.close()
    for thread in started:
        thread.join(timeout=30)
    assert [thread.name for thread in started if thread.is_alive()] == []
    farm.close()  # a second close is harmless
