"""Queries on models and versions: names, semantic versions, defaults, status changes."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inference_farm.errors import Conflict, InvalidInput, NotFound
from inference_farm.registry.models import Model, ModelVersion

NAME_RULE = (
    "model names use letters, digits, '-', '_' and '.', start with a letter or digit, "
    "and have at most 64 characters"
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION_RULE = "versions are semantic, MAJOR.MINOR.PATCH with non-negative integers, e.g. 1.2.0"
VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
SERVABLE = ("ready",)


def check_name(name: str) -> str:
    """name, if it follows the naming rule; else InvalidInput naming the rule."""
    if not NAME.fullmatch(name):
        raise InvalidInput(f"invalid model name {name!r}: {NAME_RULE}")
    return name


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a semantic version; else InvalidInput naming the rule."""
    match = VERSION.fullmatch(text)
    if not match:
        raise InvalidInput(f"invalid version {text!r}: {VERSION_RULE}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _order(version: ModelVersion) -> tuple[int, int, int]:
    return version.major, version.minor, version.patch


def find_model(session: Session, name: str) -> Model | None:
    """The model called name, or None."""
    return session.scalars(select(Model).where(Model.name == name)).one_or_none()


def get_model(session: Session, name: str) -> Model:
    """The model called name; NotFound otherwise."""
    model = find_model(session, check_name(name))
    if model is None:
        raise NotFound(f"model {name!r} not found")
    return model


def list_models(session: Session) -> list[Model]:
    """Every model, by name."""
    return list(session.scalars(select(Model).order_by(Model.name)))


def create_model(session: Session, name: str, description: str = "") -> Model:
    """Create and commit a model; Conflict if the name is taken."""
    model = Model(name=check_name(name), description=description)
    session.add(model)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"model {name!r} already exists") from None
    return model


def ensure_model(session: Session, name: str) -> Model:
    """The model called name, created (without description) if it does not exist."""
    model = find_model(session, check_name(name))
    if model is not None:
        return model
    try:
        return create_model(session, name)
    except Conflict:  # created meanwhile by a concurrent upload
        return get_model(session, name)


def versions(model: Model, include_retired: bool = False) -> list[ModelVersion]:
    """The model's versions, newest first."""
    chosen = [v for v in model.versions if include_retired or v.status != "retired"]
    return sorted(chosen, key=_order, reverse=True)


def next_version(model: Model) -> str:
    """The next patch after the highest version ever used (retired ones included)."""
    every = versions(model, include_retired=True)
    if not every:
        return "1.0.0"
    top = every[0]
    return f"{top.major}.{top.minor}.{top.patch + 1}"


def add_version(session: Session, model: Model, version: str | None, **fields: Any) -> ModelVersion:
    """Create and commit a pending version; Conflict if it exists (retired ones too)."""
    version = version or next_version(model)
    major, minor, patch = parse_version(version)
    record = ModelVersion(
        model=model, version=version, major=major, minor=minor, patch=patch, **fields
    )
    session.add(record)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"version {version} of model {model.name!r} already exists; versions are immutable, "
            "upload under a new version"
        ) from None
    return record


def get_version(session: Session, name: str, version: str) -> ModelVersion:
    """One version of a model, retired ones included; NotFound otherwise."""
    parse_version(version)
    model = get_model(session, name)
    for record in model.versions:
        if record.version == version:
            return record
    raise NotFound(f"version {version} of model {name!r} not found")


def default_version(model: Model) -> ModelVersion | None:
    """The version pinned by PATCH if it is ready, else the highest ready version."""
    ready = [v for v in versions(model) if v.status in SERVABLE]
    pinned = [v for v in ready if v.version == model.default_version]
    return (pinned or ready or [None])[0]


def resolve(session: Session, name: str, version: str | None = None) -> ModelVersion:
    """The version to serve for name (and version, if given); NotFound if there is none."""
    if version is not None:
        record = get_version(session, name, version)
        if record.status == "retired":
            raise NotFound(f"version {version} of model {name!r} was deleted")
        return record
    model = get_model(session, name)
    chosen = default_version(model)
    if chosen is None:
        states = ", ".join(f"{v.version} is {v.status}" for v in versions(model)) or "none"
        raise NotFound(f"model {name!r} has no ready version ({states})")
    return chosen


def pin_default(session: Session, model: Model, version: str | None) -> Model:
    """Pin the default version (None unpins); the version must be ready."""
    if version is not None:
        record = get_version(session, model.name, version)
        if record.status != "ready":
            raise Conflict(
                f"version {version} is {record.status}; only a ready version can be pinned"
            )
    model.default_version = version
    session.commit()
    return model


def unreferenced(session: Session, sha256: str | None) -> bool:
    """True when no version that is not retired refers to the artifact (or samples) sha256."""
    if sha256 is None:
        return False
    query = select(ModelVersion.id).where(
        or_(ModelVersion.sha256 == sha256, ModelVersion.warmup_sha256 == sha256),
        ModelVersion.status != "retired",
    )
    return session.scalars(query.limit(1)).first() is None


def retire(session: Session, record: ModelVersion) -> None:
    """Mark a version retired and unpin it; the caller commits."""
    record.status = "retired"
    if record.model.default_version == record.version:
        record.model.default_version = None


def set_result(
    session: Session, version_id: int, status: str, **fields: Any
) -> ModelVersion | None:
    """Record a validation outcome, unless the version was retired meanwhile."""
    record = session.get(ModelVersion, version_id)
    if record is None or record.status == "retired":
        return None
    record.status = status
    for key, value in fields.items():
        setattr(record, key, value)
    session.commit()
    return record
