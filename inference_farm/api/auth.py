"""API keys on every request: the route's scope, the key's model allowlist, its rate limit."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from inference_farm.errors import Forbidden, Unauthorized
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import mask, record_use
from inference_farm.registry.models import ApiKey

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
OPEN = "open"
# Any live key, whatever its scopes: for routes that show a key only itself (GET /v1/keys/me).
ANY_KEY = "any key"
SCOPE_ATTRIBUTE = "_farm_scope"
# flask-smorest's own documentation routes: the API's shape is not a secret.
OPEN_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui"}
LAST_USED_EVERY = dt.timedelta(minutes=1)


def scope(name: str) -> Callable[[F], F]:
    """Declare the scope a view needs (OPEN: no key, ANY_KEY: any live key); every route must
    declare one."""

    def mark(view: F) -> F:
        setattr(view, SCOPE_ATTRIBUTE, name)
        return view

    return mark


def required_scope(app: Flask, endpoint: str, method: str) -> str | None:
    """The scope declared for endpoint and method, or None when the view declares none."""
    if endpoint in OPEN_ENDPOINTS or method == "OPTIONS":
        return OPEN
    view = app.view_functions.get(endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, "get" if method == "HEAD" else method.lower(), None)
    return getattr(view, SCOPE_ATTRIBUTE, None)


def _unauthorized(message: str) -> Unauthorized:
    error = Unauthorized(message)
    error.headers = {"WWW-Authenticate": 'Bearer realm="inference-farm"'}
    return error


def bearer(header: str) -> str:
    """The key of an Authorization header: Bearer <key>, or Basic with the key as password
    (as Triton's clients' BasicAuth plugin sends it); 401 when missing or malformed."""
    kind, _, token = header.partition(" ")
    if not header:
        raise _unauthorized("an API key is required: send Authorization: Bearer <key>")
    if kind.lower() == "basic":
        token = _basic_password(token.strip())
    elif kind.lower() != "bearer":
        token = ""
    if not token.strip():
        raise _unauthorized(
            "malformed Authorization header: expected Bearer <key>, or Basic with the key as "
            "password"
        )
    return token.strip()


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def allows(key: ApiKey, wanted: str) -> bool:
    """True when the key holds the scope, or admin; any key passes ANY_KEY."""
    return wanted == ANY_KEY or wanted in key.scopes or "admin" in key.scopes


def check_model(name: str) -> None:
    """Forbidden unless the current key may use model name (its allowlist, if any)."""
    key: ApiKey | None = g.get("api_key")
    if key is not None:
        _check_model(key, name)


def _check_model(key: ApiKey, name: str) -> None:
    if key.models is not None and name not in key.models:
        raise Forbidden(f"this key may not use model {name!r}")


def permit(key: ApiKey, wanted: str, model: str | None) -> ApiKey:
    """key, when it holds scope wanted and may use model; else Forbidden."""
    if not allows(key, wanted):
        raise Forbidden(f"this key lacks the scope {wanted!r}")
    if model is not None:
        _check_model(key, model)
    return key


def key_for(farm: Any, header: str, wanted: str, model: str | None, where: str) -> ApiKey:
    """The live key of an Authorization header, permitted wanted (and model), its use counted
    against its rate limit; 401, 403 or 429 otherwise. where names the request, for the log."""
    token = bearer(header)
    session = farm.db.session()
    key = farm.registry.key(session, token)
    if key is None:
        log.info("refused key %s on %s", mask(token), where)
        raise _unauthorized("the API key is unknown, revoked or expired")
    permit(key, wanted, model)
    farm.limiter.hit(key)
    _touch(session, key)
    return key


def quick_key(farm: Any, header: str, wanted: str, model: str | None) -> ApiKey | None:
    """key_for() when it needs neither the registry nor Redis (a cached key, no rate limit,
    no last-use due); None when key_for() must run."""
    key = farm.registry.cached_key(bearer(header))
    if key is None or farm.limiter.limits_of(key) is not None or _touch_due(key):
        return None
    return permit(key, wanted, model)


def authenticate() -> None:
    """Before each request: 401 without a live key, 403 without the scope or the model."""
    if request.endpoint is None:
        return  # no such route: 404 or 405 follows
    wanted = required_scope(current_app, request.endpoint, request.method)
    if wanted == OPEN:
        return
    if wanted is None:  # fail closed: a route that forgot its scope serves nobody
        log.error("route %s %s declares no scope", request.method, request.endpoint)
        raise Forbidden("this route is not available")
    model = (request.view_args or {}).get("name")
    where = f"{request.method} {request.path}"
    farm = current_app.extensions["farm"]
    g.api_key = key_for(farm, request.headers.get("Authorization", ""), wanted, model, where)


def _touch_due(key: ApiKey) -> bool:
    return key.last_used_at is None or utcnow() - key.last_used_at > LAST_USED_EVERY


def _touch(session: Any, key: ApiKey) -> None:
    # Recording every use would write on every request; once a minute is enough to audit.
    if _touch_due(key):
        record_use(session, key, utcnow())


def current_key() -> ApiKey | None:
    """The key of the current request, once authenticated."""
    return g.get("api_key")


def is_admin() -> bool:
    """True when the current key holds the admin scope."""
    key = current_key()
    return key is not None and "admin" in key.scopes
