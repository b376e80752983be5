"""Logs, Prometheus metrics and their multiprocess folders, request ids."""
