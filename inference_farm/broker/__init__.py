"""Celery and Redis: the app and its config, every task, queue and key name, publishing,
replies, heartbeats, control broadcasts and the API's view of the queues."""
