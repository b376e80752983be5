"""/v1/keys: create, list and revoke API keys (scope keys:admin); any key reads itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from inference_farm.api.auth import ANY_KEY, current_key, scope
from inference_farm.api.context import farm
from inference_farm.api.schemas import MAX_ID, KeyMe, model_name, storable
from inference_farm.errors import NotFound
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import SCOPES, create_key, revoke_key
from inference_farm.registry.models import ApiKey

blp = Blueprint("keys", __name__, url_prefix="/v1/keys", description="API keys")
MAX_DAYS = 36_500  # a key may be made to expire at most a century from now
MAX_RATE = 10**6


class KeyCreate(Schema):
    """A new key."""

    name = fields.String(required=True, validate=[validate.Length(1, 128), storable])
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)), required=True, validate=validate.Length(1)
    )
    models = fields.List(
        model_name(), validate=validate.Length(max=1000),
        metadata={"description": "Allow only these models."},
    )  # fmt: skip
    expires_in_days = fields.Integer(validate=validate.Range(1, MAX_DAYS))
    rate_per_second = fields.Float(validate=validate.Range(0, MAX_RATE, min_inclusive=False))
    burst = fields.Integer(validate=validate.Range(1, MAX_RATE))
    max_queued_jobs = fields.Integer(validate=validate.Range(1, MAX_ID))


class KeyOut(Schema):
    """A key as listed: never its secret."""

    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    scopes = fields.List(fields.String())
    models = fields.List(fields.String(), allow_none=True)
    rate_per_second = fields.Float(allow_none=True)
    burst = fields.Integer(allow_none=True)
    max_queued_jobs = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


class CreatedKeyOut(KeyOut):
    """A key just created, with its secret: shown this once only."""

    secret = fields.String()


@blp.route("")
class Keys(MethodView):
    """The API keys."""

    @scope("keys:admin")
    @blp.response(200, KeyOut(many=True))
    def get(self) -> Any:
        """List keys (never their secrets)"""
        return farm().db.session().scalars(select(ApiKey).order_by(ApiKey.id)).all()

    @scope("keys:admin")
    @blp.arguments(KeyCreate)
    @blp.response(201, CreatedKeyOut)
    def post(self, body: dict) -> Any:
        """Create a key; its secret is in this answer and nowhere else"""
        days = body.pop("expires_in_days", None)
        expires = utcnow() + dt.timedelta(days=days) if days else None
        name, scopes, models = body.pop("name"), body.pop("scopes"), body.pop("models", None)
        created = create_key(farm().db.session(), name, scopes, models, expires, **body)
        created.record.secret = created.secret  # shown in this answer, stored nowhere
        return created.record


@blp.route("/me")
class MyKey(MethodView):
    """The calling key."""

    @scope(ANY_KEY)
    @blp.response(200, KeyMe)
    def get(self) -> Any:
        """Show the calling key: name, prefix, scopes, models, expiry, limits; never its secret"""
        return current_key()


@blp.route("/<int:key_id>")
class OneKey(MethodView):
    """One API key."""

    @scope("keys:admin")
    @blp.response(200, KeyOut)
    def delete(self, key_id: int) -> Any:
        """Revoke a key: it stops working at once"""
        if key_id > MAX_ID:  # no registry row has such an id; the database would refuse it
            raise NotFound(f"key {key_id} not found")
        return revoke_key(farm().db.session(), key_id)
