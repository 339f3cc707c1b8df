"""Serve the sandbox on its own: python -m pd_app.sandbox --port 8900 --client-id X --client-secret Y ..."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from werkzeug.serving import make_server

from . import SandboxSettings, create_sandbox_app

DEFAULTS = SandboxSettings()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pd_app.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument("--client-id", default=DEFAULTS.client_id)
    parser.add_argument("--client-secret", default=DEFAULTS.client_secret)
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        help="a registered Callback URL (repeat for several)",
    )
    parser.add_argument("--base-url", help="where clients reach the sandbox (default: http://HOST:PORT)")
    parser.add_argument("--app-name", default=DEFAULTS.app_name)
    parser.add_argument("--scopes", default=",".join(DEFAULTS.scopes), help="comma-separated")
    parser.add_argument("--access-token-ttl", type=int, default=DEFAULTS.access_token_ttl)
    parser.add_argument("--no-control", action="store_true", help="leave out the /_sandbox/* endpoints")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Bind first so that --port 0 can report (and advertise as api_domain) the port actually chosen.
    server = make_server(args.host, args.port, None, threaded=True)  # type: ignore[arg-type]
    base_url = args.base_url or f"http://{args.host}:{server.port}"
    settings = SandboxSettings(
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=args.redirect_uris or DEFAULTS.redirect_uris,
        base_url=base_url,
        app_name=args.app_name,
        scopes=[s.strip() for s in args.scopes.split(",") if s.strip()],
        access_token_ttl=args.access_token_ttl,
        control=not args.no_control,
    )
    server.app = create_sandbox_app(settings)
    print(f"Pipedrive sandbox listening on {base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
