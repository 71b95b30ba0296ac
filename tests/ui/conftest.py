"""Fixtures for the explorer's tests: a tiny hand-built catalog in a real embedded store, and a retriever
that ranks it by word overlap (with shared-entity explanations), so page logic is tested in milliseconds
without an encoder. The browser tests build a real workspace instead (tests/ui/test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from mmkg.graph import ids
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.retrieval.search import Explanation, Hit, Query, Retriever, Step
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_json

PRODUCTS = [
    # id, name, colour, article type, gender, RGB
    ("p1", "Nike Men White Running Shoes", "White", "Sports Shoes", "Men", (240, 240, 240)),
    ("p2", "Puma Men Black Sports Shoes", "Black", "Sports Shoes", "Men", (20, 20, 20)),
    ("p3", "Adidas Women White Tshirt", "White", "Tshirts", "Women", (250, 250, 245)),
    ("p4", "Levis Men Blue Jeans", "Blue", "Jeans", "Men", (30, 60, 160)),
    ("p5", "Nike Women Black Running Shoes", "Black", "Sports Shoes", "Women", (10, 10, 10)),
    ("p6", "Fabindia Women Red Kurta", "Red", "Kurtas", "Women", (200, 20, 30)),
    ("p7", "Puma Men Red Tshirt", "Red", "Tshirts", "Men", (210, 30, 40)),
    ("p8", "Adidas Men White Sports Shoes", "White", "Sports Shoes", "Men", (235, 235, 235)),
]
SOURCE = "tiny"


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"\w+", text.lower())}


@dataclass
class TinyCollection:
    settings: Settings
    store: GraphStore
    image_of: dict[str, str]
    """product id -> image node id"""
    text_of: dict[str, str]
    images_dir: Path


class WordRetriever(Retriever):
    """Ranks images (or texts) by how many words of the query their record's name shares, ties by id.

    Image queries rank by closeness of the image's mean colour. Explanations are shared-entity paths
    `query -MENTIONS-> entity <-DEPICTS- image`, as the dense retriever gives them.
    """

    def __init__(self, tiny: TinyCollection) -> None:
        self.tiny = tiny
        self.calls: list[tuple[Query, int, str]] = []

    def search(self, query: Query, k: int = 10, target: str = "images") -> list[Hit]:  # type: ignore[override]
        self.calls.append((query, k, target))
        store = self.tiny.store
        scored: list[tuple[float, str, str]] = []
        for pid, name, _colour, _art, _gender, rgb in PRODUCTS:
            if query.text is not None:
                score = len(_words(query.text) & _words(name)) / max(len(_words(query.text)), 1)
            else:
                assert query.image is not None
                q = query.image.resize((1, 1)).getpixel((0, 0))
                score = 1.0 - sum(abs(a - b) for a, b in zip(q, rgb, strict=True)) / 765
            scored.append((score, pid, name))
        scored.sort(key=lambda t: (-t[0], t[1]))
        hits = []
        for score, pid, name in scored[:k]:
            nid = self.tiny.image_of[pid] if target == "images" else self.tiny.text_of[pid]
            node = store.get_nodes([nid])[nid]
            rid = str(node.props["record"])
            rec = store.get_nodes([rid])[rid]
            hit = Hit(
                id=nid,
                score=round(score, 4),
                kind="image" if target == "images" else "text",
                path=str(node.props.get("path")) if target == "images" else None,
                text=str(node.props.get("text")) if target == "texts" else None,
                record=rid,
                attributes=list(rec.props.get("attributes", [])),
            )
            if query.text is not None:
                shared = [w for w in sorted(_words(query.text)) if w in _words(name)]
                paths = []
                for w in shared[:3]:
                    eid = ids.entity_id(w)
                    if not store.get_nodes([eid]):
                        continue
                    rel = "DEPICTS" if target == "images" else "MENTIONS"
                    paths.append(
                        [
                            Step("query", "Query", f"query {query.text!r}", "MENTIONS", True),
                            Step(eid, "Entity", w, rel, False),
                            Step(nid, "Image" if target == "images" else "Text", name),
                        ]
                    )
                hit.explanation = Explanation(shared_entities=[p[1].name for p in paths], paths=paths)
            hits.append(hit)
        return hits


def build_tiny(home: Path, last_ingest: bool = True) -> TinyCollection:
    """Eight products, each a Record with one image (a small PNG) and one name Text, attribute entities
    (colour, article type, gender) depicted by the image and word entities mentioned by the name."""
    from mmkg.graph.memory import MemoryGraphStore

    settings = Settings.load(home=home, store="memory", max_image_bytes=2_000_000, max_image_pixels=4_000_000)
    ws = Workspace(home).ensure()
    images_dir = home.parent / "tiny-images"
    images_dir.mkdir(parents=True, exist_ok=True)
    store = MemoryGraphStore(ws.graph_dir)
    nodes: list[Node] = []
    edges: list[Edge] = []
    image_of: dict[str, str] = {}
    text_of: dict[str, str] = {}
    entities: dict[str, Node] = {}
    for pid, name, colour, art, gender, rgb in PRODUCTS:
        path = images_dir / f"{pid}.png"
        img = Image.new("RGB", (60, 80), rgb)
        img.save(path)
        iid = ids.image_id(path.read_bytes())
        rid = ids.record_id(SOURCE, pid)
        tid = ids.text_id(rid, "name", name)
        image_of[pid], text_of[pid] = iid, tid
        attrs = [("baseColour", colour), ("articleType", art), ("gender", gender)]
        nodes += [
            Node(
                rid,
                Label.RECORD,
                {"source": SOURCE, "source_id": pid, "attributes": [f"{k}:{v}" for k, v in attrs], "complete": True},
            ),
            Node(iid, Label.IMAGE, {"path": str(path), "width": 60, "height": 80, "record": rid}),
            Node(tid, Label.TEXT, {"text": name, "kind": "name", "record": rid}),
        ]
        edges += [Edge(rid, iid, Rel.HAS), Edge(rid, tid, Rel.HAS), Edge(tid, iid, Rel.DESCRIBES)]
        for k, v in attrs:
            eid = ids.entity_id(f"{k}:{v}")
            entities[eid] = Node(eid, Label.ENTITY, {"name": ids.normalize_name(f"{k}:{v}"), "kind": "attribute"})
            edges.append(Edge(iid, eid, Rel.DEPICTS, {"score": 1.0, "source": "attribute"}))
        for w in sorted(_words(name)):
            eid = ids.entity_id(w)
            entities[eid] = Node(eid, Label.ENTITY, {"name": w, "kind": "noun"})
            edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "text"}))
            edges.append(Edge(iid, eid, Rel.DEPICTS, {"score": 0.5, "source": "tag"}))
    store.upsert_nodes(nodes + list(entities.values()))
    store.upsert_edges(edges)
    store.commit()
    if last_ingest:
        atomic_write_json(
            ws.last_ingest,
            {
                "source": SOURCE,
                "ingested": len(PRODUCTS),
                "already_present": 0,
                "skipped": [
                    {"item": "images/broken.jpg", "reason": "corrupt image (image file is truncated)"},
                    {"item": "../../etc/passwd", "reason": "path leaves the collection folder"},
                ],
                "seconds": 1.5,
            },
        )
    return TinyCollection(settings, store, image_of, text_of, images_dir)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[TinyCollection]:
    t = build_tiny(tmp_path / "ws")
    yield t
    t.store.close()


@pytest.fixture
def tiny_backend(tiny: TinyCollection):  # type: ignore[no-untyped-def]
    from mmkg.ui.backend import Backend

    return Backend(tiny.settings, store=tiny.store, retrievers={"dense": WordRetriever(tiny)})


def png_bytes(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (240, 240, 240)) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so the browser tests can screenshot a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
