"""The artifact store: content addressing, limits, and the worker cache for remote stores."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import fsspec
import pytest

from inference_farm.errors import InvalidInput, NotFound, PayloadTooLarge
from inference_farm.storage import ArtifactStore

CONTENT = b"onnx bytes " * 1000
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def local(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore((tmp_path / "store").as_uri(), tmp_path / "cache")


@pytest.fixture
def remote(tmp_path: Path) -> ArtifactStore:
    # fsspec's in-memory filesystem stands in for s3:// and friends: same code path.
    return ArtifactStore(f"memory://farm-{uuid.uuid4().hex}", tmp_path / "cache")


def test_put_stores_by_digest_once(local: ArtifactStore, tmp_path: Path) -> None:
    first = local.put_stream(io.BytesIO(CONTENT), max_bytes=10**6)
    second = local.put_stream(io.BytesIO(CONTENT), max_bytes=10**6)
    assert first == second
    assert (first.sha256, first.size) == (DIGEST, len(CONTENT))
    stored = tmp_path / "store" / DIGEST[:2] / f"{DIGEST}.onnx"
    assert stored.read_bytes() == CONTENT
    assert first.uri == stored.as_uri()
    assert local.local_path(DIGEST) == stored
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == [stored.name]


def test_over_the_limit_stores_nothing(local: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="limit of 100 bytes"):
        local.put_stream(io.BytesIO(CONTENT), max_bytes=100)
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


def test_empty_upload_is_refused(local: ArtifactStore) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        local.put_stream(io.BytesIO(b""), max_bytes=100)


def test_delete_removes_the_file_and_tolerates_absence(local: ArtifactStore) -> None:
    local.put_stream(io.BytesIO(CONTENT), max_bytes=10**6)
    local.delete(DIGEST)
    assert not local.exists(DIGEST)
    local.delete(DIGEST)
    with pytest.raises(NotFound):
        local.local_path(DIGEST)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ab" * 31, "G" * 64, ""])
def test_only_wellformed_digests_reach_the_filesystem(local: ArtifactStore, digest: str) -> None:
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        local.local_path(digest)


def test_remote_store_downloads_into_the_cache_once(remote: ArtifactStore, tmp_path: Path) -> None:
    artifact = remote.put_stream(io.BytesIO(CONTENT), max_bytes=10**6)
    assert artifact.uri.startswith("memory://")
    path = remote.local_path(DIGEST)
    assert path == tmp_path / "cache" / f"{DIGEST}.onnx"
    assert path.read_bytes() == CONTENT
    remote.fs.rm_file(remote._key(DIGEST))
    assert remote.local_path(DIGEST) == path  # served from the cache now


def test_remote_download_checks_the_digest(remote: ArtifactStore) -> None:
    remote.put_stream(io.BytesIO(CONTENT), max_bytes=10**6)
    with fsspec.open(remote.uri(DIGEST), "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(InvalidInput, match="does not match"):
        remote.local_path(DIGEST)
    assert list(remote.cache_dir.glob("*.onnx")) == []
