"""The key of an Authorization header: Bearer, or Basic with the key as password."""

from __future__ import annotations

import base64

import pytest

from inference_farm.api.auth import bearer
from inference_farm.errors import Unauthorized


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.mark.parametrize(
    "header", ["Bearer ifk_a_b", "bearer  ifk_a_b ", basic("farm:ifk_a_b"), basic(":ifk_a_b")]
)
def test_the_key_is_read_from_bearer_or_basic(header: str) -> None:
    assert bearer(header) == "ifk_a_b"


@pytest.mark.parametrize(
    "header", ["Bearer", "Token ifk_a_b", "Basic !!!", basic("no-colon"), basic("farm:")]
)
def test_anything_else_is_401_saying_what_is_expected(header: str) -> None:
    with pytest.raises(Unauthorized, match="expected Bearer <key>, or Basic"):
        bearer(header)
