"""The registry: SQLAlchemy models and every query on them."""

from inference_farm.registry.db import Base, Database
from inference_farm.registry.models import ApiKey, Job, Model, ModelVersion

__all__ = ["ApiKey", "Base", "Database", "Job", "Model", "ModelVersion"]
