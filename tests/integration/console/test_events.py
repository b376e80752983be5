"""GET /v1/events through the real API and a real worker: snapshots, changes as they commit,
parts by scope, and a revoked key's stream ending."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.integration.console.events_reader import EventReader
from tests.integration.helpers import model_bytes, new_key, post_version
from tests.onnx_models import tiny_mlp

pytestmark = pytest.mark.integration


def _is(kind: str, **want: object):
    def match(got_kind: str, data: object) -> bool:
        if got_kind != kind:
            return False
        if kind != "change":
            return all(part in data for part in want.get("parts", ()))  # type: ignore[operator]
        return any(all(c.get(k) == v for k, v in want.items()) for c in data)  # type: ignore[union-attr]

    return match


def test_a_stream_needs_a_key(api_url: str) -> None:
    response = httpx.get(api_url + "/v1/events", timeout=10)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]
    assert httpx.post(api_url + "/v1/events", timeout=10).status_code == 405


def test_snapshots_and_changes_reach_an_admin(api_url: str, admin_key: str, worker: object) -> None:
    reader = EventReader(api_url, admin_key)
    try:
        assert reader.response.headers["content-type"].startswith("text/event-stream")
        _, hello = reader.wait(_is("hello"))
        assert hello["scopes"] == ["admin"] and hello["interval"] > 0
        _, snap = reader.wait(
            lambda k, d: k == "snapshot" and bool(d.get("workers")) and "api" in d, timeout=60
        )
        assert snap["ready"] is True and snap["checks"]["database"] == "ok"
        worker_seen = snap["workers"][0]
        assert worker_seen["device"] == "cpu" and worker_seen["heartbeat_age_s"] < 30
        assert "farm.control" in worker_seen["queues"]
        response = post_version(api_url, admin_key, "evt", model_bytes(tiny_mlp()))
        assert response.status_code == 202, response.text
        reader.wait(_is("change", type="version", model="evt", status="ready"), timeout=60)
        _, snap = reader.wait(lambda k, d: k == "snapshot" and "evt" in d.get("queues", {}))
        assert snap["queues"]["evt"] == 0
        job = _submit_job(api_url, admin_key)
        reader.wait(_is("change", type="job", id=job, status="succeeded"), timeout=60)
        _, snap = reader.wait(lambda k, d: k == "snapshot" and d["jobs"].get("succeeded"))
    finally:
        reader.close()


def _submit_job(api_url: str, key: str) -> str:
    body = {"model": "evt", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                        "data": np.ones(4).tolist()}]}  # fmt: skip
    response = httpx.post(
        api_url + "/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_a_key_sees_only_its_scopes_parts(api_url: str, farm_database: str) -> None:
    key, _ = new_key(farm_database, ["infer"])
    reader = EventReader(api_url, key)
    try:
        _, snap = reader.wait(_is("snapshot"))
        assert "ready" in snap
        assert not {"workers", "queues", "jobs", "api"} & set(snap)
    finally:
        reader.close()


def test_a_revoked_keys_stream_ends(api_url: str, admin_key: str, farm_database: str) -> None:
    key, key_id = new_key(farm_database, ["models:read"])
    reader = EventReader(api_url, key)
    try:
        _, snap = reader.wait(_is("snapshot"))
        assert "workers" in snap and "jobs" not in snap
        headers = {"Authorization": f"Bearer {admin_key}"}
        revoked = httpx.delete(f"{api_url}/v1/keys/{key_id}", headers=headers, timeout=10)
        assert revoked.status_code in (200, 204), revoked.text
        _, error = reader.wait(_is("error"), timeout=30)
        assert error["status"] == 401 and "revoked" in error["message"]
        assert reader.closed.wait(10)
    finally:
        reader.close()


def _stamps(reader: EventReader, count: int) -> list[float]:
    """The times of the first count snapshots the reader got."""
    seen: list[float] = []

    def enough(kind: str, data: dict) -> bool:
        if kind == "snapshot" and data["at"] not in seen:
            seen.append(data["at"])
        return len(seen) >= count

    reader.wait(enough)
    return seen


def test_viewers_share_one_snapshot_per_interval(api_url: str, admin_key: str) -> None:
    readers = [EventReader(api_url, admin_key) for _ in range(3)]
    try:
        stamps = [_stamps(reader, 4) for reader in readers]
        start = max(seen[0] for seen in stamps)
        end = min(seen[-1] for seen in stamps)
        windows = [{at for at in seen if start <= at <= end} for seen in stamps]
        # Computed once per interval and sent to every viewer: the same snapshots for all.
        assert windows[0] == windows[1] == windows[2] and len(windows[0]) >= 2
    finally:
        for reader in readers:
            reader.close()
