"""`mmkg serve`: the API under uvicorn, safe by default.

It binds 127.0.0.1 unless told otherwise and refuses a non-loopback address without a token. uvicorn
stops on SIGTERM and SIGINT: in-flight requests finish (up to a grace period), a running ingest job
stops between batches (the next ingest of the same path finishes it), and the collection is closed.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import uvicorn

from mmkg.errors import UserInputError
from mmkg.service.app import create_app
from mmkg.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
GRACE_S = 10


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to listen beyond this machine without a bearer token."""
    if not is_loopback(host) and not settings.api_token:
        raise UserInputError(
            f"refusing to listen on {host} without a token: set MMKG_API_TOKEN (clients then send "
            "`Authorization: Bearer <token>`), or keep the default 127.0.0.1"
        )


def serve(
    settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, ingest_root: Path | None = None
) -> int:
    check_bind(settings, host)
    if ingest_root is not None and not ingest_root.is_dir():
        raise UserInputError(f"the ingest root is not a folder: {ingest_root}")
    app = create_app(settings, ingest_root)
    app.state.service.reload()  # load models and the collection before the port opens: the first request is fast
    auth = "bearer token required" if settings.api_token else "no token (loopback only)"
    print(
        f"mmkg API on http://{host}:{port}  (docs /docs; workspace {Path(settings.home).resolve()}, store "
        f"{settings.store}; {auth}; Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_S, access_log=False
    )
    uvicorn.Server(config).run()
    return 0
