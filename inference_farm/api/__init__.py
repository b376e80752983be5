"""Where a request enters: the app factory, the ASGI lane, the one data plane, the coalescer,
auth, rate limits, and routes/ with one blueprint per resource."""

from inference_farm.api.app import create_app
from inference_farm.api.context import Farm, farm

__all__ = ["Farm", "create_app", "farm"]
