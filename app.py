"""What gunicorn (`gunicorn app:app`) and `flask --app app` load."""

import sys

from pd_app import create_app
from pd_app.config import ConfigError

# gunicorn's exit code for "this app cannot load": its master stops (exit 4) instead of forking a new worker
# that would fail the same way, forever. Any non-zero code does for `flask --app app`.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as exc:
    print(f"pd_app: {exc}", file=sys.stderr)
    raise SystemExit(APP_LOAD_ERROR) from None
