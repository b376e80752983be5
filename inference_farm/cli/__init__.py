"""The `inference-farm` command line: click commands, the ones that call the REST API, and
`up` with its supervisor."""

from inference_farm.cli.main import cli, main

__all__ = ["cli", "main"]
