"""Regenerate inference.proto's modules: `python -m inference_farm.protocol.grpc.generate`.

Needs grpcio-tools (in the `dev` extra). The modules are committed, so that installing the
farm needs no protoc; tests/unit/protocol/test_grpc_stubs.py fails when they are stale.
The messages live in a descriptor pool of their own, not protobuf's default one: Triton's
client defines the same names (inference.ModelInferRequest …), and one process may load both.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "POOL.AddSerializedFile("
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTO = HERE / "inference.proto"


def _protoc(*args: str) -> None:
    from grpc_tools import protoc

    code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", *args, str(PROTO.relative_to(ROOT))])
    if code != 0:
        raise RuntimeError(f"protoc failed with {code} on {PROTO.name}")


def descriptor_set() -> bytes:
    """inference.proto compiled, as the FileDescriptorSet bytes protoc writes."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "inference.pb"
        _protoc(f"--descriptor_set_out={out}")
        return out.read_bytes()


def generate(out: Path = ROOT) -> None:
    """Write inference_pb2.py, inference_pb2.pyi and inference_pb2_grpc.py under out."""
    _protoc(f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}")
    module = out / PROTO.relative_to(ROOT).with_name("inference_pb2.py")
    text = module.read_text()
    if DEFAULT_POOL not in text:
        raise RuntimeError(f"protoc's output changed: no {DEFAULT_POOL!r} in {module.name}")
    text = text.replace(DEFAULT_POOL, OWN_POOL).replace(
        "_sym_db = _symbol_database.Default()",
        "_sym_db = _symbol_database.Default()\nPOOL = _descriptor_pool.DescriptorPool()",
    )
    module.write_text(text)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
