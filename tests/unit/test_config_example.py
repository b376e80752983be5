"""configs/inference-farm.example.yaml documents every setting and loads when uncommented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from inference_farm.settings import Settings, load_settings

EXAMPLE = Path(__file__).parents[2] / "configs" / "inference-farm.example.yaml"
# "name: value" or "# name: value", at the start of a line.
KEY_LINE = re.compile(r"^\s*(?:#\s*)?([a-z][a-z0-9_]*):(?:\s|$)")
COMMENTED = re.compile(r"^(\s*)#\s?([a-z][a-z0-9_]*:(?:\s.*)?)$")


def test_example_names_every_setting() -> None:
    assert EXAMPLE.is_file(), f"{EXAMPLE} is missing"
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    named = {match.group(1) for line in lines if (match := KEY_LINE.match(line))}
    missing = sorted(set(Settings.model_fields) - named)
    assert not missing, f"settings not in {EXAMPLE.name}: {missing}"


def test_example_loads_with_everything_uncommented(tmp_path: Path) -> None:
    assert EXAMPLE.is_file(), f"{EXAMPLE} is missing"
    lines = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = COMMENTED.match(line)
        if match and match.group(2).split(":", 1)[0] in Settings.model_fields:
            line = match.group(1) + match.group(2)
        lines.append(line)
    path = tmp_path / "uncommented.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    active = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(active) == set(Settings.model_fields)
    settings = load_settings(env={"INFERENCE_FARM_CONFIG": str(path)})
    assert settings.model_fields_set == set(Settings.model_fields)


def test_example_loads_as_shipped() -> None:
    assert EXAMPLE.is_file(), f"{EXAMPLE} is missing"
    settings = load_settings(env={"INFERENCE_FARM_CONFIG": str(EXAMPLE)})
    assert settings == load_settings(env={})
