"""The workspace's vector indexes, one per kind of node, tied to the encoder that filled them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmkg.errors import UserInputError
from mmkg.index.base import VectorIndex
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_json

KINDS = ("images", "texts", "entities")


@dataclass
class Vectors:
    """Indexes over image, text and entity-name vectors of one workspace (FAISS, Milvus, or Neo4j's own)."""

    images: VectorIndex
    texts: VectorIndex
    entities: VectorIndex

    def __iter__(self) -> Iterator[VectorIndex]:
        return iter((self.images, self.texts, self.entities))

    def save(self) -> None:
        for index in self:
            index.save()

    def close(self) -> None:
        """Give back server connections (Milvus, Neo4j), and stop a Milvus Lite server this process ran."""
        for index in self:
            close = getattr(index, "close", None)
            if close is not None:
                close()

    @classmethod
    def open(cls, settings: Settings, dim: int, encoder_id: str) -> Vectors:
        """Open (or create) the indexes; refuse vectors made by a different encoder, or kept by another backend.

        With `seed_source` neo4j the vectors live on the graph nodes in Neo4j, in its vector indexes; with
        milvus, in one Milvus collection per kind (Milvus Lite in the workspace unless `milvus_uri` says)."""
        folder = Workspace(settings.home).index_dir
        check_encoder(folder, encoder_id, dim, settings.seed_source)
        if settings.seed_source == "milvus":
            from mmkg.index.milvus_index import open_indexes as open_milvus

            return cls(*open_milvus(milvus_uri(settings), KINDS, dim))
        if settings.seed_source == "neo4j":
            from mmkg.graph.neo4j_server import connection_settings
            from mmkg.index.neo4j_index import open_indexes

            return cls(*open_indexes(*connection_settings(settings), KINDS, dim))

        from mmkg.index.faiss_index import FaissIndex

        return cls(*(FaissIndex.open(folder / kind, dim, settings.exact_index_max) for kind in KINDS))


def milvus_uri(settings: Settings) -> str:
    """The Milvus the workspace's vectors live in: `milvus_uri`, else Milvus Lite at <home>/index/milvus.db."""
    return settings.milvus_uri or str(Workspace(settings.home).index_dir / "milvus.db")


def check_encoder(folder: Path, encoder_id: str, dim: int, index: str = "faiss") -> None:
    """`index/encoder.json` records the encoder and the index backend the workspace's vectors were made with:
    opening them with another would find no vectors (every search empty), so it is refused. A manifest from
    before the backend was recorded gets the current one."""
    manifest = folder / "encoder.json"
    if manifest.exists():
        recorded = json.loads(manifest.read_text())
        if recorded.get("encoder") != encoder_id or recorded.get("dim") != dim:
            raise UserInputError(
                f"this workspace's vectors were made by encoder {recorded.get('encoder')!r}, "
                f"not the current {encoder_id!r}; ingest into a fresh MMKG_HOME "
                f"(or delete {folder.parent / 'index'} and {folder.parent / 'graph'} and ingest again)"
            )
        if recorded.get("index", index) != index:
            raise UserInputError(
                f"this workspace's vectors are in the {recorded['index']} index, not {index} (MMKG_INDEX); "
                f"set MMKG_INDEX={recorded['index']}, or ingest into a fresh MMKG_HOME to use {index}"
            )
        if "index" not in recorded:
            atomic_write_json(manifest, {**recorded, "index": index})
    else:
        atomic_write_json(manifest, {"encoder": encoder_id, "dim": dim, "index": index})
