"""Model archives: what is listed, what is refused (naming the member), and how it unpacks."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from inference_farm.errors import InvalidInput, PayloadTooLarge
from inference_farm.storage import archives
from inference_farm.storage.archives import Limits, UnsafeMember
from tests.real_shapes import tar_archive, zip_archive

LIMITS = Limits(max_bytes=10 * 2**20, max_ratio=100)
GOOD = {"model.onnx": b"onnx", "weights.bin": b"w" * 100, "sub/extra.bin": b"e"}


def write(tmp_path: Path, kind: str, members: dict[str, bytes], **links: str) -> Path:
    if kind == "zip":
        return zip_archive(tmp_path / "a.zip", members, links or None)
    return tar_archive(tmp_path / f"a.{kind}", members, kind == "tgz", links or None)


@pytest.mark.parametrize("kind", ["zip", "tar", "tgz"])
def test_a_good_archive_lists_and_unpacks(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, GOOD)
    fmt = archives.format_of(path)
    assert fmt == ("zip" if kind == "zip" else "tar")
    members = archives.list_members(path, fmt, LIMITS)
    assert {m.name for m in members if not m.is_dir} == set(GOOD)
    assert archives.entry_of(members) == "model.onnx"
    dest = archives.unpack(path, fmt, tmp_path / "out", LIMITS)
    assert {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()} == set(GOOD)
    assert (dest / "sub" / "extra.bin").read_bytes() == b"e"
    assert archives.unpack(path, fmt, dest, LIMITS) == dest  # once unpacked, reused
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_plain_files_are_onnx(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x08\x12\x04test")
    assert archives.format_of(tmp_path / "m.onnx") == "onnx"


@pytest.mark.parametrize(
    "name, says",
    [
        ("../escape.bin", "reaches outside its folder with '..'"),
        ("sub/../../escape.bin", "reaches outside its folder with '..'"),
        ("/etc/cron.d/x", "is an absolute path"),
        ("C:/windows/x", "is an absolute path"),
        ("back\\slash.bin", "control-character name"),
        ("tab\t.bin", "control-character name"),
        ("a//b.bin", "empty, '.' or overlong path part"),
        ("a/./b.bin", "empty, '.' or overlong path part"),
        ("x" * 300, "overlong path part"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_member_names_that_escape_are_refused_by_name(
    tmp_path: Path, kind: str, name: str, says: str
) -> None:
    path = write(tmp_path, kind, {"model.onnx": b"m", name: b"evil"})
    with pytest.raises(UnsafeMember, match=says) as caught:
        archives.list_members(path, archives.format_of(path), LIMITS)
    assert repr(name[:200])[1:-1][:20] in str(caught.value)
    with pytest.raises(UnsafeMember):
        archives.unpack(path, archives.format_of(path), tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.bin").exists()


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_links_are_refused(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, {"model.onnx": b"m"}, **{"weights.bin": "/etc/passwd"})
    with pytest.raises(UnsafeMember, match=r"'weights.bin' is a link"):
        archives.list_members(path, archives.format_of(path), LIMITS)


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_hard_links_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes) -> None:
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as archive:
        archive.addfile(tarfile.TarInfo("model.onnx"), io.BytesIO(b""))
        special = tarfile.TarInfo("weights.bin")
        special.type, special.linkname = kind, "model.onnx"
        archive.addfile(special)
    with pytest.raises(UnsafeMember, match=r"'weights.bin' is (a link|not a regular file)"):
        archives.list_members(path, "tar", LIMITS)


def test_a_member_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.onnx", b"1")
        archive.writestr("./model.onnx", b"2")
    with pytest.raises(UnsafeMember, match=r"appears twice"):
        archives.list_members(path, "zip", LIMITS)


def test_a_file_and_a_folder_of_one_name_clash(tmp_path: Path) -> None:
    path = write(tmp_path, "tar", {"model.onnx": b"m", "w": b"file", "w/inner.bin": b"x"})
    with pytest.raises(UnsafeMember, match=r"crosses a file"):
        archives.unpack(path, "tar", tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


def _bomb(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model.onnx", b"m")
        archive.writestr("zeros.bin", b"\0" * size)
    return path


def test_a_zip_bomb_is_413_naming_the_ratio(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "bomb.zip", 8 * 2**20)  # 8 MiB of zeros in ~8 KiB
    with pytest.raises(PayloadTooLarge, match=r"'zeros.bin' expands .* max_archive_ratio"):
        archives.list_members(path, "zip", LIMITS)
    assert archives.list_members(path, "zip", Limits(LIMITS.max_bytes, 10_000))


def test_a_tgz_bomb_is_413(tmp_path: Path) -> None:
    path = write(tmp_path, "tgz", {"model.onnx": b"m", "zeros.bin": b"\0" * (4 * 2**20)})
    with pytest.raises(PayloadTooLarge, match=r"max_archive_ratio"):
        archives.list_members(path, "tar", LIMITS)


def test_the_unpacked_total_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, "tar", {"model.onnx": b"m", "big.bin": b"x" * 5000})
    with pytest.raises(PayloadTooLarge, match=r"more than 4096 bytes"):
        archives.unpack(path, "tar", tmp_path / "out", Limits(4096, 100))
    assert not (tmp_path / "out").exists()


def test_small_members_may_compress_well(tmp_path: Path) -> None:
    # Under RATIO_FLOOR, a well-compressed file (a small zero-filled tensor) is fine.
    path = _bomb(tmp_path / "small.zip", 512 * 1024)
    assert len(archives.list_members(path, "zip", LIMITS)) == 2


def test_a_member_larger_than_it_says_is_refused(tmp_path: Path) -> None:
    member = archives.Member("weights.bin", 3, False)
    with pytest.raises(UnsafeMember, match=r"larger than it says"):
        archives._copy(io.BytesIO(b"12345"), io.BytesIO(), member)


def test_which_onnx_file() -> None:
    one = [archives.Member("m/model.onnx", 1, False), archives.Member("m/w.bin", 1, False)]
    assert archives.entry_of(one) == "m/model.onnx"
    with pytest.raises(InvalidInput, match=r"holds no .onnx file"):
        archives.entry_of([archives.Member("w.bin", 1, False)])
    two = [*one, archives.Member("other.onnx", 1, False)]
    with pytest.raises(InvalidInput, match=r"2 .onnx files .*form field model_file"):
        archives.entry_of(two)
    assert archives.entry_of(two, "other.onnx") == "other.onnx"
    assert archives.entry_of(two, "./m/model.onnx") == "m/model.onnx"
    with pytest.raises(InvalidInput, match=r"no .onnx file 'nope.onnx'"):
        archives.entry_of(two, "nope.onnx")


def test_an_unreadable_archive_is_400(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(InvalidInput, match=r"zip archive cannot be read"):
        archives.list_members(path, "zip", LIMITS)
