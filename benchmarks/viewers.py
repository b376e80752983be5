"""Viewers of /v1/events in a process of their own: what open consoles hold on the API.

python -m benchmarks.viewers URL KEY VIEWERS SECONDS

Prints "ready" once every stream has had its hello, then, at the end, one JSON line with
the events all viewers received, by kind. Imports only httpx, so that it starts fast.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx


def view(url: str, key: str, viewers: int, seconds: float) -> dict[str, int]:
    """Hold viewers streams open for seconds; the events they got, by kind."""
    counts: list[dict[str, int]] = [{} for _ in range(viewers)]
    greeted = threading.Semaphore(0)

    def one(index: int) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + seconds
        with httpx.stream("GET", url + "/v1/events", headers=headers, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                    counts[index][kind] = counts[index].get(kind, 0) + 1
                    if kind == "hello":
                        greeted.release()
                if time.monotonic() > deadline:
                    return

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(viewers)]
    for thread in threads:
        thread.start()
    for _ in threads:
        greeted.acquire(timeout=30)
    print("ready", flush=True)
    for thread in threads:
        thread.join(seconds + 30)
    return {k: sum(c.get(k, 0) for c in counts) for k in ("hello", "snapshot", "change")}


if __name__ == "__main__":
    url, key, viewers, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(view(url, key, viewers, seconds)), flush=True)
