"""Worker pool definitions: YAML files naming a worker's models, device, concurrency, cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inference_farm.errors import SettingsError

# Pool keys and the setting each one sets.
SETTINGS = {
    "device": "worker_device",
    "concurrency": "worker_concurrency",
    "intra_op_threads": "intra_op_threads",
    "cache_max_models": "cache_max_models",
    "cache_max_bytes": "cache_max_bytes",
    "cache_idle_seconds": "cache_idle_seconds",
}


@dataclass(frozen=True)
class Pool:
    """A worker pool: its models (None means every model) and the settings it overrides."""

    models: list[str] | None
    overrides: dict[str, Any]


def load_pool(path: Path) -> Pool:
    """Read a pool file; SettingsError names the file and the key that is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read the pool file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise SettingsError(f"the pool file {path} is not valid YAML: {reason}") from None
    if not isinstance(data, dict) or "models" not in data:
        raise SettingsError(f"the pool file {path} must be a mapping with a `models` key")
    unknown = sorted(set(data) - set(SETTINGS) - {"models"})
    if unknown:
        known = ", ".join(["models", *SETTINGS])
        raise SettingsError(f"unknown key {unknown[0]!r} in the pool file {path}: expected {known}")
    return Pool(
        _models(data["models"], path), {SETTINGS[k]: v for k, v in data.items() if k in SETTINGS}
    )


def _models(value: Any, path: Path) -> list[str] | None:
    if value == "all":
        return None
    if isinstance(value, list) and value and all(isinstance(name, str) for name in value):
        return value
    raise SettingsError(f"`models` in the pool file {path} must be `all` or a list of model names")
