"""Artifact store: model files content-addressed by sha256, in a local folder or any fsspec URL."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import fsspec

from inference_farm.errors import InvalidInput, NotFound, PayloadTooLarge
from inference_farm.storage import archives

log = logging.getLogger(__name__)
CHUNK = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What a digest's file is stored as: a model, an archive of one, or warmup samples.
SUFFIXES = {"onnx": ".onnx", "zip": ".zip", "tar": ".tar", "warmup": ".warmup"}


@dataclass(frozen=True)
class Artifact:
    """A stored file: its digest, size and where it lives."""

    sha256: str
    size: int
    uri: str


@dataclass(frozen=True)
class Staged:
    """An upload copied to a local file, not yet in the store."""

    path: Path
    sha256: str
    size: int


def _check_digest(sha256: str) -> str:
    # Digests become path components: only a well-formed one may reach the filesystem.
    if not SHA256.match(sha256):
        raise InvalidInput(f"not a sha256 digest: {sha256!r}")
    return sha256


class ArtifactStore:
    """Content-addressed files under url; workers read them through a local cache folder."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.url_to_fs(self.url)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols
        self.cache_dir = cache_dir

    def _key(self, sha256: str, kind: str = "onnx") -> str:
        sha256 = _check_digest(sha256)
        return f"{self.root}/{sha256[:2]}/{sha256}{SUFFIXES[kind]}"

    def uri(self, sha256: str, kind: str = "onnx") -> str:
        """The URI of the artifact with this digest."""
        return self.fs.unstrip_protocol(self._key(sha256, kind))

    def _staging_dir(self) -> Path:
        base = Path(self.root) / ".staging" if self.local else self.cache_dir / ".staging"
        base.mkdir(parents=True, exist_ok=True)
        return base

    @contextlib.contextmanager
    def stage(self, stream: BinaryIO, max_bytes: int) -> Iterator[Staged]:
        """Copy stream to a local file, hashing as it goes; the file is gone after the block."""
        digest, size = hashlib.sha256(), 0
        handle, staged = tempfile.mkstemp(dir=self._staging_dir(), suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"the upload is larger than the limit of {max_bytes} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidInput("the uploaded file is empty: expected an .onnx model file")
            yield Staged(Path(staged), digest.hexdigest(), size)
        finally:
            Path(staged).unlink(missing_ok=True)

    def put_stream(self, stream: BinaryIO, max_bytes: int, kind: str = "onnx") -> Artifact:
        """Copy stream into the store, hashing as it goes; identical content is stored once."""
        with self.stage(stream, max_bytes) as staged:
            return self.commit(staged, kind)

    def commit(self, staged: Staged, kind: str = "onnx") -> Artifact:
        """Move a staged file into the store as kind (onnx, zip, tar or warmup)."""
        key = self._key(staged.sha256, kind)
        if not self.fs.exists(key):
            if self.local:
                Path(key).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged.path, key)  # atomic: readers never see a partial file
            else:
                self.fs.put_file(str(staged.path), key)
            log.info("stored artifact %s (%d bytes)", key.rsplit("/", 1)[-1], staged.size)
        return Artifact(sha256=staged.sha256, size=staged.size, uri=self.uri(staged.sha256, kind))

    def exists(self, sha256: str, kind: str = "onnx") -> bool:
        """True when the artifact with this digest is stored."""
        return self.fs.exists(self._key(sha256, kind))

    def delete(self, sha256: str) -> None:
        """Remove the artifact, its cached copy and unpacked folder; a missing one is fine."""
        for kind, suffix in SUFFIXES.items():
            key = self._key(sha256, kind)
            if self.fs.exists(key):
                self.fs.rm_file(key)
                log.info("removed artifact %s%s", sha256, suffix)
            (self.cache_dir / f"{sha256}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.cache_dir / "unpacked" / sha256, ignore_errors=True)

    def local_path(self, sha256: str, kind: str = "onnx") -> Path:
        """A local file with the artifact's content, downloading it into the cache if needed."""
        key = self._key(sha256, kind)
        if self.local:
            if not os.path.isfile(key):
                raise NotFound(f"artifact {sha256} is missing from the store {self.url}")
            return Path(key)
        cached = self.cache_dir / f"{sha256}{SUFFIXES[kind]}"
        if cached.is_file():
            return cached
        return self._download(key, sha256, cached)

    def unpacked(self, sha256: str, kind: str, limits: archives.Limits) -> Path:
        """The folder the archive with this digest unpacks into, unpacked on first use."""
        folder = self.cache_dir / "unpacked" / _check_digest(sha256)
        if folder.is_dir():
            return folder
        return archives.unpack(self.local_path(sha256, kind), kind, folder, limits)

    def _download(self, key: str, sha256: str, cached: Path) -> Path:
        if not self.fs.exists(key):
            raise NotFound(f"artifact {sha256} is missing from the store {self.url}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=self.cache_dir, suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(handle, "wb") as out, self.fs.open(key, "rb") as source:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise InvalidInput(f"artifact {sha256} in {self.url} does not match its digest")
            os.replace(partial, cached)
        finally:
            Path(partial).unlink(missing_ok=True)
        return cached
