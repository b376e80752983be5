"""The images' HEALTHCHECK: `python3 healthcheck.py api|worker`; exit 0 when healthy, else 1.

api: GET /v2/health/live on this container's API port (HTTPS when the API serves TLS).
worker: a Celery ping, through the farm's broker, to the workers of this container only
(a worker names itself farm-<pid>@<hostname>, so the ping goes to the pattern *@<hostname>).
Both read the farm's own settings, as the service does: environment and INFERENCE_FARM_CONFIG.
"""

from __future__ import annotations

import socket
import ssl
import sys
import urllib.request

from inference_farm.settings import load_settings

TIMEOUT = 4.0


def api() -> bool:
    settings = load_settings()
    scheme = "https" if settings.tls_cert else "http"
    context = None
    if scheme == "https":  # the certificate names the service, not 127.0.0.1
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{scheme}://127.0.0.1:{settings.api_port}/v2/health/live"
    with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:  # noqa: S310
        return response.status == 200


def worker() -> bool:
    from inference_farm.broker.app import create_celery

    celery = create_celery(load_settings())
    try:
        replies = celery.control.ping(
            timeout=TIMEOUT / 2, pattern=f"*@{socket.gethostname()}", matcher="glob"
        )
    finally:
        celery.close()
    return any("ok" in answer for reply in replies for answer in reply.values())


def main(argv: list[str]) -> int:
    checks = {"api": api, "worker": worker}
    if len(argv) != 1 or argv[0] not in checks:
        print("usage: healthcheck.py api|worker", file=sys.stderr)
        return 2
    try:
        healthy = checks[argv[0]]()
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print("healthy" if healthy else "unhealthy: no answer")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
