"""`create_encoder(settings)`: the one way to get an Encoder; loaded once per process and reused."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from mmkg.encoders.base import Encoder
from mmkg.encoders.hub import HubAccess
from mmkg.errors import UserInputError
from mmkg.settings import Settings

log = logging.getLogger(__name__)

BACKENDS = ("lit", "clip")


def create_encoder(settings: Settings) -> Encoder:
    """The encoder `settings.encoder` names (`lit` or `clip`), cached per process.

    * ``lit``: the heads trained into ``<home>/models/lit`` (ModelNotReadyError, naming the
      training command, when there are none).
    * ``clip``: ``settings.clip_model``, a hub name or a local directory (ModelNotReadyError when
      it cannot be loaded, e.g. the hub is unreachable).

    Re-training the lit heads (a new config.json) is picked up by the next call.
    """
    backend = settings.encoder
    if backend == "lit":
        from mmkg.encoders.lit import CONFIG_NAME, lit_model_dir  # torch: loaded for the chosen backend only

        config = lit_model_dir(settings) / CONFIG_NAME
        try:
            stamp = config.stat()
            version: tuple[int, int] = (stamp.st_mtime_ns, stamp.st_size)
        except OSError:
            version = (0, 0)
        return _load("lit", str(Path(settings.home).resolve()), version, "", settings.device, settings.batch_size)
    if backend == "clip":
        hub = HubAccess.from_settings(settings)
        return _load("clip", "", (0, 0), settings.clip_model, settings.device, settings.batch_size, hub)
    raise UserInputError(f"unknown encoder {backend!r}: choose one of {', '.join(BACKENDS)}")


@functools.lru_cache(maxsize=8)
def _load(
    backend: str,
    home: str,
    version: tuple[int, int],
    clip_model: str,
    device: str,
    batch_size: int,
    hub: HubAccess | None = None,
) -> Encoder:
    # Failures raise, and lru_cache does not cache exceptions: a later call retries.
    if backend == "lit":
        from mmkg.encoders.lit import LitEncoder, lit_model_dir  # torch: loaded for the chosen backend only

        return LitEncoder(lit_model_dir(Settings(home=Path(home))), device=device, batch_size=batch_size)
    from mmkg.encoders.clip import ClipEncoder  # transformers: loaded for the chosen backend only

    return ClipEncoder(clip_model, device=device, batch_size=batch_size, hub=hub)


def clear_encoder_cache() -> None:
    """Forget the loaded encoders (e.g. after training new heads, or in tests)."""
    _load.cache_clear()
