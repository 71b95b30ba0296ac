"""The explorer's page logic, apart from Streamlit: what a search is, what a page shows, what a message says.

Everything here takes plain values and a GraphStore and returns plain values, so it is tested without a
browser and without a running app; `mmkg.ui.app` only lays these out on the page.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image, ImageOps

from mmkg.errors import BadImageError, MmkgError, ModelNotReadyError, StoreUnavailableError, UserInputError
from mmkg.graph.schema import Edge, Label, Node, Rel, Subgraph, title_order
from mmkg.graph.store import GraphStore
from mmkg.ingest.images import decode_image, read_image_bytes
from mmkg.ingest.mapping import IMAGE_EXTENSIONS
from mmkg.retrieval.search import Hit, display_name, render_path
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

TARGETS = ("images", "texts")
DEFAULT_K = 24
MAX_K = 200
PER_PAGE = 12
UPLOAD_TYPES = [ext.lstrip(".") for ext in IMAGE_EXTENSIONS]
INGEST_HINT = "mmkg ingest ../shared/data/fashion"
TRAIN_HINT = "mmkg train encoder --data ../shared/data/flickr8k/train"
ENTITY_FACET = "entity"
"""Facet group of the entities a result depicts or mentions (the others are record attribute keys)."""
MAX_FACET_VALUES = 12
# --- messages ------------------------------------------------------------------------------


class UploadRejected(MmkgError):
    """An uploaded query image that cannot be used: its message is shown as is."""


def upload_limit_mb(settings: Settings) -> int:
    """The upload size limit given to Streamlit (whole megabytes), from the workspace's image size guard."""
    return max(1, settings.max_image_bytes // (1 << 20))


def message_for(exc: BaseException) -> str:
    """One plain line for the page: what went wrong and what to do about it, never a traceback."""
    if isinstance(exc, StoreUnavailableError):
        what = str(exc).rstrip(".")
        if "mmkg neo4j start" in what:  # the store's own message already says what to do
            return f"The graph store is unavailable: {what}. Then reload this page."
        return (
            f"The graph store is unavailable: {what}. Start the local server with `mmkg neo4j start` "
            "(or check NEO4J_URI, NEO4J_USER and NEO4J_PASSWORD), then reload this page."
        )
    if isinstance(exc, ModelNotReadyError):
        if "mmkg " in str(exc):  # the error names the command that trains what is missing
            return f"A model this search needs is not ready: {exc}."
        return f"A model this search needs is not ready: {exc}. Train the encoder first: `{TRAIN_HINT}`."
    if isinstance(exc, UploadRejected | UserInputError):
        return str(exc)
    if isinstance(exc, MmkgError):
        return f"{type(exc).__name__.removesuffix('Error')}: {exc}"
    return f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log."


def empty_workspace_message(settings: Settings) -> str:
    return (
        f"The workspace `{Path(settings.home).resolve()}` holds no collection yet. "
        f"Ingest one first, for example `{INGEST_HINT}`, then reload this page."
    )


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


# --- the search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchRequest:
    """What the user asked for: a text or an uploaded image, a target and k."""

    text: str | None = None
    image_name: str | None = None
    image_bytes: bytes | None = field(default=None, repr=False)
    target: str = "images"
    k: int = DEFAULT_K
    mode: str = ""

    @property
    def is_image(self) -> bool:
        return self.image_bytes is not None

    @property
    def signature(self) -> str:
        """Identifies the search: the same signature means the same results (cached per session)."""
        h = hashlib.sha256()
        h.update((self.text or "").encode("utf-8"))
        h.update(b"\x1f")
        h.update(self.image_bytes or b"")
        h.update(f"\x1f{self.target}\x1f{self.k}\x1f{self.mode}".encode())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        if self.is_image:
            return f"the uploaded image {self.image_name!r}"
        return repr(self.text)


def make_request(
    text: str | None,
    upload: tuple[str, bytes] | None,
    target: str | None,
    k: int | float | str | None,
    mode: str = "",
) -> SearchRequest | None:
    """The search the page's inputs ask for, or None when there is nothing to search yet.

    An uploaded image wins over the text box (remove the upload to search by text again); a target or
    k that is not valid (a hand-edited link) falls back to the default rather than failing.
    """
    tgt = target if target in TARGETS else "images"
    try:
        kk = int(k) if k is not None else DEFAULT_K
    except (TypeError, ValueError):
        kk = DEFAULT_K
    kk = min(max(kk, 1), MAX_K)
    if upload is not None:
        name, data = upload
        return SearchRequest(image_name=name, image_bytes=data, target=tgt, k=kk, mode=mode)
    if text is not None and text.strip():
        return SearchRequest(text=text.strip(), target=tgt, k=kk, mode=mode)
    return None


def decode_upload(name: str, data: bytes, settings: Settings) -> Image.Image:
    """The uploaded bytes as an RGB image, or UploadRejected with a plain reason (size first, then content)."""
    if len(data) == 0:
        raise UploadRejected(f"The uploaded file {name!r} is empty.")
    if len(data) > settings.max_image_bytes:
        raise UploadRejected(
            f"The uploaded file {name!r} is {human_bytes(len(data))}, over the "
            f"{human_bytes(settings.max_image_bytes)} limit for query images."
        )
    try:
        return decode_image(data, settings.max_image_pixels, name=name)
    except BadImageError as exc:
        raise UploadRejected(f"Cannot use the uploaded file as a query image: {exc}.") from exc


def share_query(request: SearchRequest) -> str | None:
    """The query string of a link that runs this search again (text searches only: an upload has no link)."""
    if request.is_image or request.text is None:
        return None
    params: dict[str, Any] = {"q": request.text, "target": request.target}
    if request.k != DEFAULT_K:
        params["k"] = request.k
    if request.mode:
        params["mode"] = request.mode
    return "?" + "&".join(f"{key}={quote(str(value), safe='')}" for key, value in params.items())


# --- what a result shows -------------------------------------------------------------------


def short_why(hit: Hit) -> str:
    """The one-line explanation on a result card, with what the record states against the query."""
    against = [value for value, _ in hit.explanation.contradicted]
    why = _why(hit)
    return why + f" (but states {', '.join(_display_entity(a) for a in against)})" if against else why


def _why(hit: Hit) -> str:
    ents = list(dict.fromkeys(_display_entity(e) for e in hit.explanation.shared_entities))
    if ents:  # a case's diagnosis, topic and mention of one disease read the same: named once
        shown = ", ".join(ents[:4])
        more = f" and {len(ents) - 4} more" if len(ents) > 4 else ""
        if any(p and p[0].rel == "PREDICTS" for p in hit.explanation.paths):  # a photo query states nothing
            return f"states {shown}{more}, as predicted from the photo"
        return f"shares {shown}{more} with the query"
    if hit.explanation.paths:
        steps = hit.explanation.paths[0]
        middle = [s.name for s in steps[1:-1] if s.label != "Query"] if len(steps) > 2 else []
        if middle:
            return "via " + " → ".join(middle[:4]) + (" → …" if len(middle) > 4 else "")
        return render_path(steps)
    return "close to the query in the embedding space (no shared entity)"


def explanation_lines(hit: Hit, limit: int = 5) -> list[str]:
    return [render_path(p) for p in hit.explanation.paths[:limit]]


def _display_entity(name: str) -> str:
    return name.split(":", 1)[1] if ":" in name else name


def split_attribute(attr: str) -> tuple[str, str]:
    key, sep, value = attr.partition(":")
    return (key, value) if sep else ("", attr)


def facet_label(key: str) -> str:
    """`baseColour` -> `Base colour`, `articleType` -> `Article type`, `entity` -> `Entities`."""
    if key == ENTITY_FACET:
        return "Entities"
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").split()
    text = " ".join(words).lower()
    return text[:1].upper() + text[1:] if text else key


def hit_entities(store: GraphStore, hits: Sequence[Hit], per_hit: int = 20) -> dict[str, list[str]]:
    """The entities each hit depicts or mentions (attribute entities left out: attributes are facets already)."""
    out: dict[str, list[str]] = {}
    for hit in hits:
        if hit.id in out:
            continue
        names: list[str] = []
        scored: list[tuple[float, str]] = []
        for edge, other in store.neighbors(hit.id, [Rel.DEPICTS, Rel.MENTIONS], "out"):
            if other.label != Label.ENTITY or other.props.get("kind") == "attribute":
                continue
            score = edge.props.get("score", 1.0)
            weight = float(score) if isinstance(score, int | float) else 1.0
            scored.append((weight, str(other.props.get("name", other.id))))
        for _, name in sorted(scored, key=lambda t: (-t[0], t[1])):
            if name not in names:
                names.append(name)
        for name in hit.explanation.shared_entities:
            if ":" not in name and name not in names:
                names.append(name)
        out[hit.id] = names[:per_hit]
    return out


def hit_facets(hit: Hit, entities: Iterable[str]) -> dict[str, set[str]]:
    """The facet values of one hit: its record's attributes by key, and its entities."""
    values: dict[str, set[str]] = {}
    for attr in hit.attributes:
        key, value = split_attribute(attr)
        if key and value:
            values.setdefault(key, set()).add(value)
    ents = set(entities)
    if ents:
        values[ENTITY_FACET] = ents
    return values


@dataclass(frozen=True)
class FacetGroup:
    key: str
    label: str
    values: list[tuple[str, int]]
    """(value, how many of the current results have it), most frequent first."""


def build_facets(facets: Mapping[str, Mapping[str, set[str]]], max_values: int = MAX_FACET_VALUES) -> list[FacetGroup]:
    """Facet groups over the current results, the groups that split the results best first.

    A group whose values all hits share narrows nothing and is left out; entities come last.
    """
    counts: dict[str, Counter[str]] = {}
    for values in facets.values():
        for key, vals in values.items():
            counts.setdefault(key, Counter()).update(vals)
    groups: list[FacetGroup] = []
    n = len(facets)
    for key, counter in counts.items():
        if len(counter) < 2 and all(c == n for c in counter.values()):
            continue
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0].casefold()))[:max_values]
        groups.append(FacetGroup(key, facet_label(key), ranked))

    def order(g: FacetGroup) -> tuple[bool, int, str]:
        return (g.key == ENTITY_FACET, -len(g.values), g.key.casefold())

    return sorted(groups, key=order)


def apply_facets(
    hits: Sequence[Hit], facets: Mapping[str, Mapping[str, set[str]]], selected: Mapping[str, Iterable[str]]
) -> list[Hit]:
    """Hits that match every facet group with a selection (any selected value within a group)."""
    wanted = {k: set(v) for k, v in selected.items() if v}
    if not wanted:
        return list(hits)
    out = []
    for hit in hits:
        values = facets.get(hit.id, {})
        if all(values.get(key, set()) & vals for key, vals in wanted.items()):
            out.append(hit)
    return out


def page_count(n: int, per_page: int = PER_PAGE) -> int:
    return max(1, math.ceil(n / per_page))


def page_items(items: Sequence[Any], page: int, per_page: int = PER_PAGE) -> list[Any]:
    """Items of page `page` (1-based), clamped to the pages there are."""
    page = min(max(page, 1), page_count(len(items), per_page))
    return list(items[(page - 1) * per_page : page * per_page])


# --- records -------------------------------------------------------------------------------


@dataclass
class RecordView:
    """A record as a curator sees it: its images, its texts, its attributes."""

    id: str | None
    title: str
    images: list[Node] = field(default_factory=list)
    texts: list[Node] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    source: str = ""


def record_title(texts: Sequence[Node], fallback: str) -> str:
    """The text that names the record (`title_order`: the one rule search's hits are titled by too)."""
    named = [t for t in texts if t.props.get("text")]
    return str(min(named, key=_text_order).props["text"]) if named else fallback


def load_record(store: GraphStore, hit: Hit) -> RecordView:
    """The record a hit belongs to, or the hit alone when it has no record."""
    node = store.get_nodes([hit.id]).get(hit.id)
    fallback = display_name(node) if node is not None else hit.id
    if hit.record:
        rec = store.get_nodes([hit.record]).get(hit.record)
        if rec is not None:
            members = [other for _, other in store.neighbors(rec.id, [Rel.HAS], "out")]
            images = sorted((n for n in members if n.label == Label.IMAGE), key=lambda n: str(n.props.get("path", "")))
            texts = sorted((n for n in members if n.label == Label.TEXT), key=_text_order)
            return RecordView(
                id=rec.id,
                title=record_title(texts, str(rec.props.get("source_id", fallback))),
                images=images,
                texts=texts,
                attributes=[str(a) for a in rec.props.get("attributes", [])],
                source=str(rec.props.get("source", "")),
            )
    if node is None:
        return RecordView(id=None, title=fallback)
    images = [node] if node.label == Label.IMAGE else []
    texts = [node] if node.label == Label.TEXT else []
    if node.label == Label.IMAGE:
        texts = [o for _, o in store.neighbors(node.id, [Rel.DESCRIBES], "in")]
    return RecordView(id=None, title=record_title(texts, fallback), images=images, texts=texts)


def _text_order(node: Node) -> tuple[int, str]:
    return title_order(str(node.props.get("kind", "")), str(node.props.get("text", "")))


def record_titles(store: GraphStore, hits: Sequence[Hit]) -> dict[str, str]:
    """A title per hit for the result cards: the record's name or title, else the hit's own text or file."""
    out: dict[str, str] = {}
    by_record: dict[str, str] = {}
    nodes = store.get_nodes([h.id for h in hits])
    for hit in hits:
        if hit.kind == "text" and hit.text:
            out[hit.id] = hit.text
            continue
        if hit.record and hit.record in by_record:
            out[hit.id] = by_record[hit.record]
            continue
        title = ""
        if hit.record:
            texts = [o for _, o in store.neighbors(hit.record, [Rel.HAS], "out") if o.label == Label.TEXT]
            title = record_title(texts, "")
            by_record[hit.record] = title
        if not title:
            node = nodes.get(hit.id)
            title = display_name(node) if node is not None else Path(hit.path or hit.id).name
        out[hit.id] = title
    return out


# --- a result's neighbourhood and its explanation path ------------------------------------

QUERY_NODE = "query"
NEIGHBOURHOOD_RELS = (Rel.HAS, Rel.DESCRIBES, Rel.DEPICTS, Rel.MENTIONS)


@dataclass
class GraphView:
    """What the neighbourhood drawing shows: nodes, edges, the centre, and the explanation path."""

    center: str
    nodes: dict[str, dict[str, Any]]
    edges: list[dict[str, Any]]
    path_nodes: set[str]
    path_edges: set[tuple[str, str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "nodes": list(self.nodes.values()),
            "edges": self.edges,
        }


def _node_json(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "label": node.label.value,
        "name": display_name(node),
        "kind": str(node.props.get("kind", "")),
    }


def neighbourhood(
    store: GraphStore, hit: Hit, hops: int = 1, max_nodes: int = 60, max_fanout: int = 12, max_paths: int = 3
) -> GraphView:
    """The hit's graph neighbourhood (its record, texts, images, entities), with the explanation path(s) added
    and marked: every node and edge of a path is in the view even when the neighbourhood cap left it out."""
    seeds = [hit.id] + ([hit.record] if hit.record else [])
    sub: Subgraph = store.subgraph(seeds, hops=hops, rels=NEIGHBOURHOOD_RELS, max_fanout=max_fanout)
    keep = [n for n in sub.nodes][:max_nodes]
    nodes: dict[str, dict[str, Any]] = {n.id: _node_json(n) for n in keep}
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in sub.edges:
        if e.src in nodes and e.dst in nodes:
            edges[(e.src, e.dst, e.type.value)] = _edge_json(e)

    path_nodes: set[str] = set()
    path_edges: set[tuple[str, str, str]] = set()
    paths = hit.explanation.paths[:max_paths]
    missing = [s.id for p in paths for s in p if s.label != "Query" and s.id not in nodes]
    found = store.get_nodes(list(dict.fromkeys(missing))) if missing else {}
    for node in found.values():
        nodes[node.id] = _node_json(node)
    for steps in paths:
        for i, step in enumerate(steps):
            if step.label == "Query":
                nodes.setdefault(
                    QUERY_NODE, {"id": QUERY_NODE, "label": "Query", "name": _query_name(step.name), "kind": ""}
                )
                sid = QUERY_NODE
            elif step.id in nodes:
                sid = step.id
            else:
                nodes[step.id] = {"id": step.id, "label": step.label, "name": step.name, "kind": ""}
                sid = step.id
            path_nodes.add(sid)
            if step.rel is None or i + 1 >= len(steps):
                continue
            nxt = steps[i + 1]
            nid = QUERY_NODE if nxt.label == "Query" else nxt.id
            src, dst = (sid, nid) if step.forward else (nid, sid)
            key = (src, dst, step.rel)
            path_edges.add(key)
            if key not in edges:
                edges[key] = {"src": src, "dst": dst, "type": step.rel, "weight": None}
    for key, e in edges.items():
        e["path"] = key in path_edges
    for nid, n in nodes.items():
        n["path"] = nid in path_nodes
        n["center"] = nid == hit.id
    return GraphView(hit.id, nodes, list(edges.values()), path_nodes, path_edges)


def _edge_json(e: Edge) -> dict[str, Any]:
    weight = e.props.get("score", e.props.get("count"))
    value = weight if isinstance(weight, int | float) else None
    return {"src": e.src, "dst": e.dst, "type": e.type.value, "weight": value}


def _query_name(name: str) -> str:
    return name.removeprefix("query ").strip() or "query"


# --- the collection overview ---------------------------------------------------------------


@dataclass
class Overview:
    nodes: dict[str, int]
    edges: dict[str, int]
    top_entities: list[tuple[str, str, int]]
    """(name, kind, number of images and texts linked to it), most connected first."""
    last_ingest: dict[str, Any] | None
    last_ingest_error: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.nodes.get(Label.IMAGE.value) or self.nodes.get(Label.TEXT.value))


def top_entities(store: GraphStore, n: int = 15) -> list[tuple[str, str, int]]:
    degree: Counter[str] = Counter()
    for rel in (Rel.DEPICTS, Rel.MENTIONS):
        for edge in store.iter_edges(rel):
            degree[edge.dst] += 1
    top = degree.most_common(n)
    nodes = store.get_nodes([eid for eid, _ in top])
    out = []
    for eid, count in top:
        node = nodes.get(eid)
        name = str(node.props.get("name", eid)) if node else eid.removeprefix("ent:")
        kind = str(node.props.get("kind", "")) if node else ""
        out.append((name, kind, count))
    return out


def read_last_ingest(home: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The ingest pipeline's report of the last run, or (None, why not)."""
    path = Workspace(Path(home)).last_ingest
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"cannot read {path.name}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    data.setdefault("skipped", [])
    with contextlib.suppress(OSError):
        data["_when"] = path.stat().st_mtime
    return data, None


def load_overview(store: GraphStore, home: Path, n_entities: int = 15) -> Overview:
    nodes, edges = store.counts()
    last, error = read_last_ingest(home)
    return Overview(nodes, edges, top_entities(store, n_entities), last, error)


def is_empty(store: GraphStore) -> bool:
    nodes, _ = store.counts()
    return not (nodes.get(Label.IMAGE.value) or nodes.get(Label.TEXT.value))


def markdown_escape(text: str) -> str:
    """Text from the collection shown literally in Streamlit markdown (no links, emphasis, LaTeX or HTML)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|$<>~:])", r"\\\1", text)


def make_thumbnail(path: str | Path, settings: Settings, size: int = 240) -> bytes | None:
    """A square JPEG thumbnail (the image fitted on a white square), or None when the file cannot be shown."""
    try:
        data = read_image_bytes(Path(path), settings.max_image_bytes)
        image = decode_image(data, settings.max_image_pixels, name=str(path))
    except BadImageError as exc:
        log.info("no thumbnail for %s: %s", path, exc)
        return None
    image.thumbnail((size, size))
    canvas = ImageOps.pad(image, (size, size), color=(255, 255, 255))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=85)
    return out.getvalue()


def inline_code(text: str) -> str:
    """Text as a markdown code span (shown literally), whatever backticks it holds."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
