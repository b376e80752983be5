"""Worker pool files: the shipped ones load, and mistakes stop the worker with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_farm.errors import SettingsError
from inference_farm.settings import load_settings
from inference_farm.worker.pool_files import load_pool

WORKERS = Path(__file__).parents[3] / "workers"


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_shipped_pools_load_and_make_valid_settings(name: str) -> None:
    pool = load_pool(WORKERS / name)
    assert pool.models is None  # `all`
    settings = load_settings(env={}, **pool.overrides)
    assert settings.worker_device == pool.overrides["worker_device"]
    assert settings.cache_max_models == pool.overrides["cache_max_models"]


def test_a_list_of_models(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models: [tiny, big]\nconcurrency: 3\n")
    pool = load_pool(path)
    assert (pool.models, pool.overrides) == (["tiny", "big"], {"worker_concurrency": 3})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("models: all\ngpus: 2\n", "unknown key 'gpus'"),
        ("device: cpu\n", "with a `models` key"),
        ("models: 7\n", "`all` or a list"),
        ("models: [a\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_pool(path)
    assert fragment in info.value.message and str(path) in info.value.message
    assert "\n" not in info.value.message
