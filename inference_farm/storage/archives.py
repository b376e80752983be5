"""Model archives (.zip, .tar, .tar.gz): a model's .onnx file with its external data files.

Every member must be a regular file or a folder whose name is a plain relative path: no
`..`, no absolute path, no link, device or fifo. The unpacked total is bounded, and a large
member may not expand past a ratio of its compressed size: no zip bombs. Archives are
listed (at upload) and unpacked (on a worker) by the same checks.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from inference_farm.errors import InvalidInput, ModelRejected, PayloadTooLarge

FORMATS = ("onnx", "zip", "tar")
MAX_MEMBERS = 10_000
MAX_NAME = 1024
RATIO_FLOOR = 1 << 20  # members smaller than this unpacked are never too compressed
CHUNK = 1 << 20
_FORBIDDEN = set("\\\x00") | {chr(code) for code in range(32)} | {chr(127)}
# What reading a damaged or unusual archive raises (encrypted zip members: RuntimeError).
READ_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, OSError,
    NotImplementedError, RuntimeError, ValueError, zlib.error, lzma.LZMAError,
)  # fmt: skip


class UnsafeMember(ModelRejected):
    """A member of an archive that may not be unpacked; the message names it."""


@dataclass(frozen=True)
class Limits:
    """How large an archive may unpack, in all and against its compressed size."""

    max_bytes: int
    max_ratio: float

    @classmethod
    def of(cls, settings: Any) -> Limits:
        """The limits the farm's settings set: max_upload_bytes and max_archive_ratio."""
        return cls(settings.max_upload_bytes, settings.max_archive_ratio)


@dataclass(frozen=True)
class Member:
    """One member of an archive, by its normalised name."""

    name: str
    size: int
    is_dir: bool


def format_of(path: Path) -> str:
    """The format of the file at path by its first bytes: zip, tar (plain or gzip) or onnx."""
    with open(path, "rb") as file:
        head = file.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b") or head[257:262] == b"ustar":
        return "tar"
    return "onnx"


def _normalised(raw: str) -> str:
    """The member's name without a leading "./"; UnsafeMember unless it is plain."""
    what = f"archive member {raw[:200]!r}"
    if not raw or len(raw) > MAX_NAME or any(char in _FORBIDDEN for char in raw):
        raise UnsafeMember(f"{what} has an empty, overlong or control-character name")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeMember(f"{what} is an absolute path")
    name = raw.removeprefix("./").rstrip("/")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeMember(f"{what} reaches outside its folder with '..'")
    if not name or "" in parts or "." in parts or any(len(part) > 255 for part in parts):
        raise UnsafeMember(f"{what} has an empty, '.' or overlong path part")
    return name


def _zip_member(info: zipfile.ZipInfo, limits: Limits) -> Member:
    name = _normalised(info.filename)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = "a link" if kind == stat.S_IFLNK else "not a regular file"
        raise UnsafeMember(f"archive member {name!r} is {what}")
    size = info.file_size
    if size > RATIO_FLOOR and size > limits.max_ratio * max(info.compress_size, 1):
        raise PayloadTooLarge(
            f"archive member {name!r} expands {size / max(info.compress_size, 1):.0f} times "
            f"its compressed size, over max_archive_ratio ({limits.max_ratio:g})"
        )
    return Member(name, size, info.is_dir())


def _tar_member(info: tarfile.TarInfo) -> Member:
    name = _normalised(info.name)
    if not (info.isreg() or info.isdir()):
        what = "a link" if info.issym() or info.islnk() else "not a regular file"
        raise UnsafeMember(f"archive member {name!r} is {what}")
    return Member(name, info.size, info.isdir())


def _entries(path: Path, fmt: str, limits: Limits) -> Iterator[tuple[Member, Any]]:
    """Each member with its handle, checked one by one against the limits as it comes."""
    compressed, total, names = max(path.stat().st_size, 1), 0, set()
    for count, (member, handle) in enumerate(_raw_entries(path, fmt, limits), start=1):
        if count > MAX_MEMBERS:
            raise InvalidInput(f"the archive has more than {MAX_MEMBERS} members")
        if member.name in names:
            raise UnsafeMember(f"archive member {member.name!r} appears twice")
        names.add(member.name)
        total += member.size
        if total > limits.max_bytes:
            raise PayloadTooLarge(
                f"the archive unpacks to more than {limits.max_bytes} bytes (max_upload_bytes)"
            )
        if total > RATIO_FLOOR and total > limits.max_ratio * compressed:
            raise PayloadTooLarge(
                f"the archive expands more than {limits.max_ratio:g} times its size "
                "(max_archive_ratio)"
            )
        yield member, handle


def _raw_entries(path: Path, fmt: str, limits: Limits) -> Iterator[tuple[Member, Any]]:
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    yield _zip_member(info, limits), (archive, info)
        else:
            with tarfile.open(path, "r:*") as archive:
                for info in archive:
                    yield _tar_member(info), (archive, info)
    except READ_ERRORS as exc:
        raise InvalidInput(f"the {fmt} archive cannot be read: {exc}") from None


def list_members(path: Path, fmt: str, limits: Limits) -> list[Member]:
    """Every member of the archive at path, checked; UnsafeMember, 413 or 400 otherwise."""
    return [member for member, _handle in _entries(path, fmt, limits)]


def entry_of(members: list[Member], wanted: str | None = None) -> str:
    """The archive's .onnx member: the one named wanted, or the only one; 400 otherwise."""
    models = [m.name for m in members if not m.is_dir and m.name.lower().endswith(".onnx")]
    if wanted:
        wanted = wanted.removeprefix("./")
        if wanted not in models:
            listed = ", ".join(map(repr, models[:10])) or "none"
            raise InvalidInput(f"the archive has no .onnx file {wanted!r}; it has {listed}")
        return wanted
    if not models:
        raise InvalidInput("the archive holds no .onnx file: expected one model file")
    if len(models) > 1:
        raise InvalidInput(
            f"the archive holds {len(models)} .onnx files ({', '.join(map(repr, models[:10]))});"
            " say which is the model with the form field model_file"
        )
    return models[0]


def unpack(path: Path, fmt: str, dest: Path, limits: Limits) -> Path:
    """Unpack the archive at path into the new folder dest (atomically), checking every
    member again as it goes; dest, unpacked by this call or an earlier one."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
    staging.mkdir(mode=0o755)
    try:
        for member, handle in _entries(path, fmt, limits):
            _write(staging, member, handle)
        try:
            os.rename(staging, dest)
        except OSError:
            if not dest.is_dir():  # not a concurrent unpack of the same archive
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _write(root: Path, member: Member, handle: Any) -> None:
    """Write one member below root, never following or replacing anything already there."""
    target = root.joinpath(*member.name.split("/"))
    try:
        for parent in reversed(target.relative_to(root).parents[:-1]):
            folder = root / parent
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise UnsafeMember(f"archive member {member.name!r} crosses a file")
            folder.mkdir(mode=0o755, exist_ok=True)
        if member.is_dir:
            target.mkdir(mode=0o755, exist_ok=True)
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with _source(handle) as source, os.fdopen(os.open(target, flags, 0o644), "wb") as out:
            _copy(source, out, member)
    except FileExistsError:
        raise UnsafeMember(f"archive member {member.name!r} clashes with another") from None


@contextmanager
def _source(handle: Any) -> Iterator[IO[bytes]]:
    archive, info = handle
    try:
        source = archive.open(info) if isinstance(archive, zipfile.ZipFile) else None
        if source is None:
            source = archive.extractfile(info)
    except READ_ERRORS as exc:
        raise InvalidInput(f"archive member {info.filename!r} cannot be read: {exc}") from None
    with source:
        yield source


def _read(source: IO[bytes], member: Member) -> bytes:
    try:
        return source.read(CHUNK)
    except READ_ERRORS as exc:
        raise InvalidInput(f"archive member {member.name!r} cannot be read: {exc}") from None


def _copy(source: IO[bytes], out: IO[bytes], member: Member) -> None:
    written = 0
    while chunk := _read(source, member):
        written += len(chunk)
        if written > member.size:  # never more than the header declared
            raise UnsafeMember(f"archive member {member.name!r} is larger than it says")
        out.write(chunk)
