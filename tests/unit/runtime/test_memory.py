"""rss_bytes reads this process's resident memory; release_freed_memory never fails."""

from __future__ import annotations

import sys

import pytest

from inference_farm.runtime import memory


def test_rss_is_positive() -> None:
    assert memory.rss_bytes() > 0


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm")
def test_rss_follows_touched_memory() -> None:
    before = memory.rss_bytes()
    block = bytearray(64 * 2**20)  # calloc'd: the pages count only once written
    block[::4096] = b"x" * len(block[::4096])
    assert memory.rss_bytes() - before >= 60 * 2**20
    del block
    memory.release_freed_memory()
    assert memory.rss_bytes() - before < 16 * 2**20


def test_release_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    memory.release_freed_memory()


def test_release_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pad: int) -> int:
        raise OSError("no trimming today")

    monkeypatch.setattr(memory, "_malloc_trim", lambda: broken)
    memory.release_freed_memory()
