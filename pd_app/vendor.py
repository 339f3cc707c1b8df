"""Files of pinned npm packages (package.json, installed by `npm ci` into node_modules beside the pd_app
package), served from the app's own origin: the pages' CSP allows scripts and styles from 'self' only, and a
CDN would be one more party able to run code in them."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

from flask import Flask, Response, abort, current_app, request

log = logging.getLogger(__name__)


def package_dir(app: Flask, package: str) -> Path:
    return Path(app.root_path).parent / "node_modules" / package


@functools.lru_cache(maxsize=32)
def _read(path: Path) -> tuple[bytes, str]:
    """A file and its ETag, read once per process (npm ci writes them before the app starts)."""
    content = path.read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:32]


def serve(package: str, folder: str, files: Mapping[str, str], name: str, needed_by: str) -> Response:
    """`name` from the package's `folder`, if it is one of `files` (name -> media type): cacheable for an
    hour, conditional on its ETag. A missing file is a 404 and a log line saying what breaks and the fix."""
    if name not in files:
        abort(404)
    path = package_dir(current_app, package) / folder / name
    try:
        content, etag = _read(path)
    except OSError:
        log.error(
            f"{needed_by} cannot load: {package} is missing, run `npm ci` (make deps)",
            extra={"fields": {"path": str(path)}},
        )
        abort(404)
    response = Response(content, mimetype=files[name])
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    response.set_etag(etag)
    return response.make_conditional(request)
