"""Every name the API and the workers must agree on: queues, tasks, control commands, and
the Redis keys the farm writes beside Celery's own."""

from __future__ import annotations

# Queues: model management on one, inference on one per model.
CONTROL_QUEUE = "farm.control"
MODEL_QUEUE_PREFIX = "farm.model."

# Celery tasks.
PING_TASK = "farm.ping"
VALIDATE_TASK = "farm.validate"
INFER_TASK = "farm.infer"  # one request, with a job record (/v1/jobs)
INFER_BATCH_TASK = "farm.infer_batch"  # coalesced sync requests, answered on a reply list

# Control commands (Celery broadcasts) the workers answer.
LOAD_COMMAND = "farm_load"
EVICT_COMMAND = "farm_evict"
MODEL_ADDED_COMMAND = "farm_model_added"
CACHE_COMMAND = "farm_cache"

# Redis keys; {} is a worker's hostname, a queue, an API process's inbox or a task id.
HEARTBEAT_KEY = "farm:heartbeat:{}"
SERVING_KEY = "farm:serving:{}"  # sorted set per queue: hostname -> time of its last beat
REPLY_KEY = "farm:replies:{}"
DELIVERY_KEY = "farm:deliveries:{}"
# Pub/sub channel: registry changes (a version's or a job's status) as they commit; one per
# Redis database number (broker/events.py adds it).
EVENTS_CHANNEL = "farm:events"

# Celery's setting that marks a worker serving every model, current and future.
ALL_MODELS_SETTING = "farm_all_models"


def model_queue(name: str) -> str:
    """The queue that carries inference jobs for model name."""
    return MODEL_QUEUE_PREFIX + name
