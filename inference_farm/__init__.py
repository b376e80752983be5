"""inference-farm: a Celery task-queue inference farm for ONNX models."""

__version__ = "0.1.0"
