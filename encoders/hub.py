"""How the Hugging Face hub may be reached, from the settings: what the `clip` backend asks before downloading."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from mmkg.settings import Settings


@dataclass(frozen=True)
class HubAccess:
    """How the Hugging Face hub may be reached: `Settings.hf_endpoint`, `hf_offline` and `proxy`."""

    endpoint: str = "https://huggingface.co"
    offline: bool = False
    proxy: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HubAccess:
        return cls(settings.hf_endpoint, settings.hf_offline, settings.proxy)

    def reachable(self, timeout: float = 3.0) -> bool:
        """A quick TCP probe of the hub, so an unreachable hub fails in seconds, not after minutes of retries.

        Skipped (assumed reachable) behind an HTTP(S) proxy, where only the proxy can tell.
        """
        if self.proxy:
            return True
        parsed = urlparse(self.endpoint)
        host = parsed.hostname or "huggingface.co"
        port = parsed.port or (443 if parsed.scheme != "http" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False
