"""External data of an ONNX model: where its tensors say their data lives, and whether that
place is a regular file inside the model's own unpacked archive.

onnxruntime reads every location relative to the model's folder, and it treats the
location `*/_ORT_MEM_ADDR_/*` as a memory address. So a location is taken only when it is
a plain relative path of safe characters, with no `..`, that resolves inside the archive's
folder to a regular file (not a link, device or folder).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

SAFE_PATH = re.compile(r"[A-Za-z0-9._+@=,-][A-Za-z0-9._+@=, /-]*")
MAX_LOCATIONS = 10_000


class UnsafeLocation(Exception):
    """A tensor's external data points somewhere the model may not read."""


def locations(model: Any) -> list[str]:
    """Every distinct external-data location of the tensors anywhere in model, in order."""
    from onnx import TensorProto

    found: dict[str, None] = {}
    for tensor in _tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            where = {entry.key: entry.value for entry in tensor.external_data}
            found[where.get("location", "")] = None
    return list(found)


def _tensors(model: Any) -> list[Any]:
    """The tensors of the graph, its subgraphs (If, Loop and Scan bodies) and functions."""
    graphs, nodes = [model.graph], [node for function in model.functions for node in function.node]
    tensors = []
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            tensors += graph.initializer
            tensors += [sparse.values for sparse in graph.sparse_initializer]
            nodes += graph.node
        for node in nodes:
            for attribute in node.attribute:
                tensors += [attribute.t, *attribute.tensors]
                tensors += [sparse.values for sparse in attribute.sparse_tensors]
                tensors.append(attribute.sparse_tensor.values)
                graphs += [attribute.g, *attribute.graphs]
        nodes = []
    return tensors


def check(found: list[str], model_dir: Path, root: Path) -> None:
    """UnsafeLocation naming the first location that is not a regular file inside root."""
    if len(found) > MAX_LOCATIONS:
        raise UnsafeLocation(f"the model names {len(found)} external data files")
    real_root = Path(os.path.realpath(root))
    for location in found:
        _check_one(location, model_dir, real_root)


def _check_one(location: str, model_dir: Path, real_root: Path) -> None:
    what = f"external data location {location!r}"
    parts = location.split("/")
    if not SAFE_PATH.fullmatch(location) or location.startswith("/"):
        raise UnsafeLocation(
            f"{what} is not a plain relative path (letters, digits, '._+@=,-' and '/')"
        )
    if ".." in parts or "" in parts[:-1] or parts[-1] in ("", "."):
        raise UnsafeLocation(f"{what} may not contain '..' or empty parts")
    base = Path(os.path.realpath(model_dir))
    target = base.joinpath(*parts)
    try:
        modes = [os.lstat(base.joinpath(*parts[: i + 1])).st_mode for i in range(len(parts))]
    except OSError:
        raise UnsafeLocation(f"{what} is not in the uploaded archive") from None
    if any(stat.S_ISLNK(mode) for mode in modes):
        raise UnsafeLocation(f"{what} goes through a link")
    if not stat.S_ISREG(modes[-1]):
        raise UnsafeLocation(f"{what} is not a regular file")
    if not Path(os.path.realpath(target)).is_relative_to(real_root):
        raise UnsafeLocation(f"{what} is outside the uploaded archive")
