"""The API serves HTTPS when settings name a certificate and its key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inference_farm.cli.embedded_redis import free_port
from tests.services import stop_group, wait_for


def _certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, verify=False, timeout=2).status_code == 200  # noqa: S501
    except httpx.HTTPError:
        return False


def test_api_serves_https(farm_env: dict[str, str], tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    env = {**farm_env, "INFERENCE_FARM_API_PORT": str(port), "INFERENCE_FARM_API_WORKERS": "1",
           "INFERENCE_FARM_TLS_CERT": str(cert), "INFERENCE_FARM_TLS_KEY": str(key)}  # fmt: skip
    with open(tmp_path / "api.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_farm", "api"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{port}/v2/health/live"
        assert wait_for(lambda: _answers(url), timeout=60), (tmp_path / "api.log").read_text()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)
    finally:
        stop_group(process)


def test_missing_certificate_stops_the_api_with_one_line(
    farm_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**farm_env, "INFERENCE_FARM_TLS_CERT": str(tmp_path / "nope.pem"),
           "INFERENCE_FARM_TLS_KEY": str(tmp_path / "nope.key")}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "inference_farm", "api"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.strip() == f"error: the TLS file {tmp_path / 'nope.pem'} does not exist"
