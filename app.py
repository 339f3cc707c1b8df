"""What gunicorn (`gunicorn app:app`) and `flask --app app` load."""

from pd_app import create_app
from pd_app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"pd_app: {exc}") from None
