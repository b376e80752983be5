"""The Ray Serve peer: both models behind one replica with @serve.batch, until SIGTERM.

Run with the Ray venv's interpreter (the runner does):
`python benchmarks/ray_serve_app.py --models-dir D --ingress direct|proxy --port P --ready-file F`.
Serve's HTTP proxy listens on P. With `--ingress direct` the replica also serves HTTP
itself (RAY_SERVE_ENABLE_DIRECT_INGRESS) on the first free port after P, and that port is
used. Once requests can be served, the port is written to the ready file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT_SPAN = 50
SERVER = "ray-serve-benchmark"  # as in ray_models.py, which cannot be imported before Ray


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--ingress", choices=["direct", "proxy"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.002)
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    return parser.parse_args()


def _configure_env(args: argparse.Namespace) -> None:
    # Serve reads these at import time, so they must be set before `import ray.serve`.
    if args.ingress == "direct":
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(args.port + 1)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(args.port + PORT_SPAN)
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    # Replicas import benchmarks.ray_models from the checkout.
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, root)


def _probe(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/v2/health/live"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            return answer.status == 200 and SERVER in answer.read().decode()
    except (urllib.error.URLError, OSError):
        return False


def _serving_port(args: argparse.Namespace, timeout: float = 120.0) -> int:
    proxy = args.ingress == "proxy"
    candidates = [args.port] if proxy else range(args.port + 1, args.port + PORT_SPAN + 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in candidates:
            if _probe(port):
                return port
        time.sleep(0.5)
    raise SystemExit(f"Ray Serve answered on no port from {args.port} within {timeout:.0f}s")


def main() -> None:
    """Start Ray and Serve, deploy the models, write the ready file, and wait for SIGTERM."""
    args = _parse()
    _configure_env(args)
    import ray
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        from benchmarks.ray_models import Models

        models = Models.bind(
            str(args.models_dir.resolve()),
            args.max_batch_size,
            args.batch_wait_timeout_s,
            args.intra_op_threads,
        )
        serve.run(models, name="models", route_prefix="/")
        port = _serving_port(args)
        args.ready_file.write_text(f"{port}\n", encoding="utf-8")
        print(f"Ray Serve {ray.__version__} ({args.ingress}) serving on {port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
