"""Every number and text a client sends is bounded: too large or unstorable is a 4xx with a
message, never a 500 from the registry (cases schemathesis found, and their kin)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.integration.helpers import LiveClient

HUGE = 18446744073709551615


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        ("get", f"/v1/jobs?offset={HUGE}", None, "offset"),
        ("post", "/v1/keys", {"name": "k", "scopes": ["infer"], "expires_in_days": 3 * 10**26},
         "expires_in_days"),
        ("post", "/v1/keys", {"name": "k", "scopes": ["infer"], "max_queued_jobs": HUGE},
         "max_queued_jobs"),
        ("post", "/v1/keys", {"name": "k", "scopes": ["infer"], "rate_per_second": 1e300},
         "rate_per_second"),
        ("post", "/v1/keys", {"name": "a\x00b", "scopes": ["infer"]}, "name"),
        ("post", "/v1/keys", {"name": "k", "scopes": ["infer"], "models": ["\ud964"]}, "models"),
        ("post", "/v1/models", {"name": "m", "description": "nul\x00here"}, "description"),
        ("post", "/v1/models", {"name": "m", "description": "\udc75"}, "description"),
        ("post", "/v1/jobs", {"model": "m", "inputs": [], "timeout": 1e300}, "timeout"),
        ("get", "/v1/jobs?batch_id=%00", None, "batch_id"),
    ],
)  # fmt: skip
def test_out_of_bounds_values_get_a_4xx_naming_the_field(
    api: FlaskClient, method: str, path: str, body: dict | None, field: str
) -> None:
    response = getattr(api, method)(path, json=body)
    assert 400 <= response.status_code < 500, response.get_json()
    document = response.get_json()
    assert field in str(document.get("errors") or document["error"]), document


def test_a_key_id_past_any_row_is_404(api: FlaskClient) -> None:
    response = api.delete(f"/v1/keys/{HUGE}")
    assert response.status_code == 404 and "not found" in response.get_json()["error"]


def test_an_infer_timeout_past_a_day_is_400(live: LiveClient) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
            "parameters": {"timeout": 1e300}}  # fmt: skip
    response = live.post("/v2/models/anything/infer", json=body)
    assert response.status_code == 400 and "at most" in response.get_json()["error"]


def test_a_form_part_without_a_readable_name_is_a_4xx(api: FlaskClient) -> None:
    api.post("/v1/models", json={"name": "named"})
    body = (
        b'--b\r\nContent-Disposition: form-data; name="s,\\"\r\n\r\n[1]\r\n'
        b'--b\r\nContent-Disposition: form-data; name="odd"\r\n\r\ntrue\r\n--b--\r\n'
    )  # the first name's closing quote is escaped: werkzeug keys that part None
    response = api.post(
        "/v1/models/named/versions", data=body, content_type="multipart/form-data; boundary=b"
    )
    assert response.status_code == 422, response.data
    assert "(unnamed): Unknown field" in response.get_json()["error"]
