"""The house rules that import-linter does not check: no cycle between any two modules, no
module at the package root but settings, errors and storage, and small modules."""

from __future__ import annotations

from pathlib import Path

import grimp

import inference_farm

PACKAGE = Path(inference_farm.__file__).parent
ROOT_MODULES = {"__init__.py", "__main__.py", "settings.py", "errors.py"}
MAX_LINES = 400
GENERATED = ("_pb2.py", "_pb2_grpc.py")  # protoc's output (protocol/grpc/generate.py)


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("inference_farm")
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("inference_farm")
        and module < imported
        and graph.find_shortest_chain(importer=imported, imported=module)
    )
    assert cycles == []


def test_the_package_root_holds_only_settings_errors_and_storage() -> None:
    files = {path.name for path in PACKAGE.glob("*.py")}
    assert files <= ROOT_MODULES
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == {
        "api", "broker", "cli", "client", "protocol", "registry", "runtime", "storage",
        "telemetry", "worker",
    }  # fmt: skip


def test_modules_stay_small() -> None:
    long = {
        str(path.relative_to(PACKAGE)): count
        for path in PACKAGE.rglob("*.py")
        if not path.name.endswith(GENERATED)
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
