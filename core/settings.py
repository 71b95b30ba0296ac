"""The one settings object: environment (`MMKG_*`) first, CLI flags override it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.errors import UserInputError


@dataclass(frozen=True)
class Settings:
    """Everything configurable in mmkg. Construct with `Settings.load(**overrides)`."""

    home: Path = Path(".mmkg")
    """Workspace: graph, vector index, trained heads, feature cache, logs."""
    store: str = "memory"
    """Graph store backend: `memory` (embedded, networkx) or `neo4j`."""
    encoder: str = "lit"
    """Encoder backend: `lit` (offline default) or `clip`."""
    clip_model: str = "openai/clip-vit-base-patch32"
    """Hub name or local directory for the `clip` backend."""
    device: str = "cpu"
    batch_size: int = 64
    """Items per encoder batch and per store write batch."""
    ingest_batch: int = 256
    """Records per ingest commit: the unit that a killed ingest may have to redo."""
    max_image_pixels: int = 40_000_000
    """Images larger than this are refused (decompression-bomb guard)."""
    max_image_bytes: int = 50_000_000
    tag_top_k: int = 5
    """Zero-shot image tags kept per image (DEPICTS edges)."""
    tag_min_score: float = 0.2
    seed_source: str = field(default="faiss", metadata={"env": ("MMKG_INDEX",)})
    """The vector index backend (env MMKG_INDEX or MMKG_SEED_SOURCE): `faiss` (files in the workspace),
    `milvus` (Milvus Lite in the workspace, or the server at `milvus_uri`) or `neo4j` (its vector index)."""
    exact_index_max: int = 100_000
    """Up to this many vectors an index is exact (flat); above it, HNSW."""
    milvus_uri: str | None = None
    """For `seed_source` milvus: a Milvus Lite path ending in .db, or a server like http://host:19530[/database]
    (user:password@ may ride in it); unset: Milvus Lite at <home>/index/milvus.db."""
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: str | None = None
    log_level: str = "WARNING"
    api_token: str | None = None
    """Bearer token `mmkg serve` requires on every endpoint but /healthz (env MMKG_API_TOKEN); without one it
    serves loopback only."""
    ingest_root: str | None = None
    """The only folder whose collections `POST /ingest` may read (env MMKG_INGEST_ROOT); unset: no API ingest."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then `MMKG_<FIELD>` / `NEO4J_*` environment variables, then non-None overrides."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            env_names = [f"MMKG_{f.name.upper()}"]
            if f.name.startswith("neo4j_"):
                env_names.append(f.name.upper())
            for env in env_names:
                raw = os.environ.get(env)
                if raw is not None and raw != "":
                    values[f.name] = _coerce(f.name, raw, f.type)
        for name, value in overrides.items():
            if value is not None:
                if name not in {f.name for f in dataclasses.fields(cls)}:
                    raise UserInputError(f"unknown setting {name!r}")
                values[name] = value
        if "home" in values:
            values["home"] = Path(values["home"])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.store not in {"memory", "neo4j"}:
            raise UserInputError(f"unknown store {self.store!r}: choose memory or neo4j")
        if self.encoder not in {"lit", "clip"}:
            raise UserInputError(f"unknown encoder {self.encoder!r}: choose lit or clip")
        if self.seed_source not in {"faiss", "milvus", "neo4j"}:
            raise UserInputError(f"unknown vector index {self.seed_source!r} (MMKG_INDEX): choose faiss, milvus, neo4j")
        if self.seed_source == "neo4j" and self.store != "neo4j":
            raise UserInputError("seed source neo4j needs the neo4j store (--store neo4j)")
        if self.batch_size < 1 or self.ingest_batch < 1:
            raise UserInputError("batch sizes must be at least 1")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: str, type_name: Any) -> Any:
    text = str(type_name)
    try:
        if "int" in text and "float" not in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError as exc:
        raise UserInputError(f"environment setting for {name} is not a number: {raw!r}") from exc
    return raw
