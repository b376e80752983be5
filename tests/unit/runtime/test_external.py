"""External data locations: only regular files inside the model's own unpacked archive."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest

from inference_farm.runtime import external
from inference_farm.runtime.external import UnsafeLocation
from tests.real_shapes import external_model_bytes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "unpacked" / "a"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w")
    (folder / "sub" / "w.bin").write_bytes(b"w")
    other = tmp_path / "unpacked" / "b"
    other.mkdir()
    (other / "secret.bin").write_bytes(b"s")
    return folder


def test_the_locations_of_a_model() -> None:
    model = onnx.load_from_string(external_model_bytes("sub/w.bin"))
    assert external.locations(model) == ["sub/w.bin"]


@pytest.mark.parametrize("location", ["weights.bin", "sub/w.bin"])
def test_files_inside_the_archive_are_taken(root: Path, location: str) -> None:
    external.check([location], root, root)


@pytest.mark.parametrize(
    "location, says",
    [
        ("../b/secret.bin", "'..'"),
        ("sub/../../b/secret.bin", "'..'"),
        ("/etc/passwd", "not a plain relative path"),
        ("*/_ORT_MEM_ADDR_/*", "not a plain relative path"),
        ("sub\\..\\w.bin", "not a plain relative path"),
        ("missing.bin", "not in the uploaded archive"),
        ("sub", "not a regular file"),
        ("sub//w.bin", "empty parts"),
        ("", "not a plain relative path"),
    ],
)
def test_anything_else_is_refused_naming_the_location(root: Path, location: str, says: str) -> None:
    with pytest.raises(UnsafeLocation, match=says) as caught:
        external.check([location], root, root)
    assert repr(location) in str(caught.value)


def test_links_are_refused(root: Path) -> None:
    os.symlink(root.parent / "b" / "secret.bin", root / "link.bin")
    os.symlink(root.parent / "b", root / "linked")
    with pytest.raises(UnsafeLocation, match="goes through a link"):
        external.check(["link.bin"], root, root)
    with pytest.raises(UnsafeLocation, match="goes through a link"):
        external.check(["linked/secret.bin"], root, root)
