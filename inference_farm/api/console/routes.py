"""/console: the web console's page and its static files, under strict security headers.

The page holds no data: every figure it shows comes from the same REST routes and event
stream any client uses, with the key the user signs in with. Static files live under a
path that carries a hash of them all, so that browsers may keep them for a year.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, render_template, send_from_directory

from inference_farm.api.auth import OPEN, scope
from inference_farm.api.context import farm

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGES = ("overview", "models", "playground", "jobs", "workers", "keys")
CSP = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "connect-src 'self'", "font-src 'self'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
YEAR_S = 365 * 86400

blp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")


def bundle_hash(folder: Path = STATIC) -> str:
    """A hash of every static file's path and content: it changes when any file does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


BUNDLE = bundle_hash()


@blp.after_request
def _secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


@blp.route("", strict_slashes=False)
@scope(OPEN)
def root() -> Response:
    """The console's address without its slash."""
    return redirect("/console/", code=308)  # type: ignore[return-value]


@blp.route("/")
@scope(OPEN)
def page() -> Response:
    """The console's one page; its views are chosen by the URL's fragment."""
    html = render_template(
        "console.html", static=f"/console/static/{BUNDLE}", pages=PAGES,
        flower_url=farm().settings.flower_url or "",
    )  # fmt: skip
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/static/<bundle>/<path:name>")
@scope(OPEN)
def static(bundle: str, name: str) -> Response:
    """A static file of this bundle, cacheable for a year; 404 for any other bundle."""
    if bundle != BUNDLE:
        abort(404)
    response = send_from_directory(STATIC, name, max_age=YEAR_S)
    response.headers["Cache-Control"] = f"public, max-age={YEAR_S}, immutable"
    return response
