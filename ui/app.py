"""The mmkg explorer: a Streamlit page over one workspace. Run it with `mmkg ui` (see `mmkg.ui.launch`).

This module only lays things out; what to search, what to show and what a message says is decided in
`mmkg.ui.logic`. Every failure a user can cause or meet (empty workspace, bad upload, store down, encoder
not trained) is shown as one plain message; anything else is logged on the server and shown as one line.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from mmkg.errors import MmkgError
from mmkg.retrieval.search import UNLIKE_NOTE, Hit, Query, Step, unmatched_note
from mmkg.settings import Settings
from mmkg.ui import logic
from mmkg.ui.backend import Backend
from mmkg.ui.graphview import HEIGHT, render_html
from mmkg.workspace import Workspace

log = logging.getLogger("mmkg.ui")

TABS = ["Results", "Detail", "Collection"]
COLUMNS = 4
SEARCH_STATE = "_mmkg_search"
OPENED = "_mmkg_opened"


# --- the shared backend --------------------------------------------------------------------


RELEASE_GRACE_S = 60.0  # how long a backend stays open after the cache replaced it: what a page needs to finish


def _release(backend: Backend) -> None:
    """Closes a replaced backend once the pages that took it before an ingest finished are done with it: closed
    at once, a page still reading its store failed (a Neo4j store's driver was closed under it). A read store
    holds no lock, so keeping it open a minute longer blocks no ingest."""
    timer = threading.Timer(RELEASE_GRACE_S, backend.close)
    timer.daemon = True
    timer.start()


@st.cache_resource(max_entries=1, show_spinner="Opening the workspace…", on_release=_release)
def _shared_backend(_settings: Settings, key: str) -> Backend:
    backend = Backend(_settings)
    threading.Thread(target=backend.warm_up, name="mmkg-warm-up", daemon=True).start()  # while the user types
    return backend


def _workspace_version(settings: Settings) -> str:
    """Changes when an ingest finishes, so the explorer reopens the store and indexes to see the new data."""
    try:
        return str(Workspace(Path(settings.home)).last_ingest.stat().st_mtime_ns)
    except OSError:
        return "0"


def shared_backend(settings: Settings) -> Backend:
    return _shared_backend(settings, f"{settings!r}|{_workspace_version(settings)}")


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(path: str, mtime: float, _settings: Settings) -> bytes | None:
    return logic.make_thumbnail(path, _settings)


def thumbnail(path: str | None, settings: Settings) -> bytes | None:
    if not path:
        return None
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    return _thumbnail(path, mtime, settings)


# --- the page ------------------------------------------------------------------------------


def main(backend: Backend | None = None) -> None:
    st.set_page_config(page_title="mmkg explorer", page_icon=":material/hub:", layout="wide")
    try:
        settings = backend.settings if backend is not None else Settings.load()
        if backend is None:
            backend = shared_backend(settings)
    except Exception as exc:
        _error(exc)
        return

    request = render_sidebar(settings, backend)
    try:
        empty = logic.is_empty(backend.store)
    except Exception as exc:
        _error(exc)
        return
    if empty:
        st.info(logic.empty_workspace_message(settings), icon=":material/inventory_2:")
        return

    tabs = st.tabs(TABS, key="view", on_change="rerun", bind="query-params")
    for tab, render in zip(tabs, (render_results, render_detail, render_collection), strict=True):
        if tab.open is False:
            continue
        with tab:
            try:
                render(settings, backend, request)
            except Exception as exc:
                _error(exc)


def _error(exc: BaseException) -> None:
    if not isinstance(exc, MmkgError):
        log.error("explorer failed", exc_info=exc)
    st.error(logic.message_for(exc), icon=":material/error:")


# --- sidebar: the search -------------------------------------------------------------------


def render_sidebar(settings: Settings, backend: Backend) -> logic.SearchRequest | None:
    limit_mb = logic.upload_limit_mb(settings)
    with st.sidebar:
        st.title("mmkg explorer")
        text = st.text_input(
            "Search text",
            key="q",
            bind="query-params",
            placeholder="white sports shoes for men",
            help="Press Enter to search. The page address is a link to this search.",
        )
        upload = st.file_uploader(
            "…or search with an image",
            type=logic.UPLOAD_TYPES,
            key="upload",
            max_upload_size=limit_mb,
            help=f"JPEG, PNG, WebP, BMP, GIF, TIFF or HEIC (a phone's photo), up to {limit_mb} MB. Remove it to search "
            "by text again.",
        )
        target = st.segmented_control(
            "Find",
            list(logic.TARGETS),
            default="images",
            required=True,
            key="target",
            bind="query-params",
        )
        k = st.number_input(
            "Results (k)", min_value=1, max_value=logic.MAX_K, value=logic.DEFAULT_K, key="k", bind="query-params"
        )
        modes = backend.modes()
        mode = modes[0]
        if len(modes) > 1:
            mode = st.selectbox(
                "Retrieval",
                modes,
                key="mode",
                bind="query-params",
                help="full: every signal (words, texts, images, attributes, graph); gnn: graph-refined vectors "
                "only; encoder: the encoder's vector only.",
            )
        st.divider()
        st.caption(f"**Store:** {logic.inline_code(backend.describe_store())}")
        st.caption(f"**Workspace:** {logic.inline_code(str(backend.home))}")
        if st.button("Reload workspace", help="Reopen the store and indexes (after an ingest or training)."):
            _shared_backend.clear()
            st.session_state.pop(SEARCH_STATE, None)
            st.rerun()
    data = (upload.name, upload.getvalue()) if upload is not None else None
    return logic.make_request(text, data, target, k, mode if len(modes) > 1 else "")


# --- results -------------------------------------------------------------------------------


def run_search(settings: Settings, backend: Backend, request: logic.SearchRequest) -> dict[str, Any]:
    """The search's hits and facet data, kept per session so paging and facets do not search again."""
    state = st.session_state.get(SEARCH_STATE)
    if state is not None and state.get("sig") == request.signature:
        return state  # type: ignore[no-any-return]
    state = {"sig": request.signature, "hits": [], "unmatched": [], "unlike": False, "error": None, "facets": {},
             "titles": {}, "seconds": 0.0}
    started = time.perf_counter()
    try:
        if request.is_image:
            assert request.image_bytes is not None and request.image_name is not None
            query = Query(image=logic.decode_upload(request.image_name, request.image_bytes, settings))
        else:
            query = Query(text=request.text)
        with st.spinner("Searching…"):
            hits, state["unmatched"], state["unlike"] = backend.search(query, request.k, request.target,
                                                                       request.mode)
            entities = logic.hit_entities(backend.store, hits)
            state["facets"] = {h.id: logic.hit_facets(h, entities.get(h.id, [])) for h in hits}
            state["titles"] = logic.record_titles(backend.store, hits)
        state["hits"] = hits
    except Exception as exc:
        if not isinstance(exc, MmkgError):
            log.error("search failed", exc_info=exc)
        state["error"] = logic.message_for(exc)
    state["seconds"] = time.perf_counter() - started
    st.session_state[SEARCH_STATE] = state
    return state


def render_results(settings: Settings, backend: Backend, request: logic.SearchRequest | None) -> None:
    if request is None:
        st.info(
            "Type a query in the sidebar and press Enter, or upload an image. "
            "A search is a link: `/?q=white%20sports%20shoes&target=images` runs that search.",
            icon=":material/search:",
        )
        return
    state = run_search(settings, backend, request)
    if state["error"]:
        st.error(state["error"], icon=":material/error:")
        return
    hits: list[Hit] = state["hits"]
    if not hits:
        st.warning("No results.")
        return

    what = "texts" if request.target == "texts" else "images"
    st.markdown(
        f"**{len(hits)} {what}** for {logic.markdown_escape(request.describe())} · {state['seconds'] * 1000:.0f} ms",
        help=None,
    )
    if state["unmatched"]:
        st.caption(logic.markdown_escape(unmatched_note(state["unmatched"])))
    if state["unlike"]:
        st.caption(logic.markdown_escape(UNLIKE_NOTE))
    share = logic.share_query(request)
    if share:
        base = (st.context.url or "").split("?", 1)[0]
        st.caption(f"Link to this search: [{logic.markdown_escape(base + share)}]({base + share})")

    facet_col, grid_col = st.columns([1.2, 4], gap="medium")
    with facet_col:
        selected = render_facets(request, state)
    shown = logic.apply_facets(hits, state["facets"], selected)
    with grid_col:
        if len(shown) < len(hits):
            st.caption(f"{len(shown)} of {len(hits)} results match the filters.")
        if not shown:
            st.warning("No result matches all the selected filters; clear some of them.")
            return
        pages = logic.page_count(len(shown), logic.PER_PAGE)
        page_key = f"page-{request.signature}-{_selection_key(selected)}"
        page = int(st.session_state.get(page_key, 1) or 1)
        ranks = {h.id: i for i, h in enumerate(hits, 1)}
        render_grid(
            settings, logic.page_items(shown, page, logic.PER_PAGE), (page - 1) * logic.PER_PAGE, ranks, state["titles"]
        )
        if pages > 1:
            st.pagination(pages, key=page_key)


def _selection_key(selected: dict[str, list[str]]) -> str:
    text = "|".join(f"{k}={','.join(sorted(v))}" for k, v in sorted(selected.items()) if v)
    return hashlib.sha1(text.encode()).hexdigest()[:8] if text else "all"


def render_facets(request: logic.SearchRequest, state: dict[str, Any]) -> dict[str, list[str]]:
    groups = logic.build_facets(state["facets"])
    selected: dict[str, list[str]] = {}
    if not groups:
        return selected
    st.markdown("**Filter results**")
    for group in groups:
        counts = dict(group.values)
        picked = st.pills(
            group.label,
            [v for v, _ in group.values],
            selection_mode="multi",
            default=None,
            key=f"facet-{request.signature}-{group.key}",
            format_func=_with_count(counts),
            wrap=True,
        )
        if picked:
            selected[group.key] = list(picked)
    return selected


def _with_count(counts: dict[str, int]) -> Callable[[Any], str]:
    return lambda value: f"{value} ({counts.get(value, 0)})"


def render_grid(
    settings: Settings, hits: Sequence[Hit], offset: int, ranks: dict[str, int], titles: dict[str, str]
) -> None:
    """Cards in rows; a card's key is its position in the shown list, its number the hit's rank in the search."""
    for row_start in range(0, len(hits), COLUMNS):
        cols = st.columns(COLUMNS)
        for i, (col, hit) in enumerate(zip(cols, hits[row_start : row_start + COLUMNS], strict=False)):
            position = offset + row_start + i + 1
            with col, st.container(border=True, key=f"result-{position}"):
                render_card(settings, hit, ranks.get(hit.id, position), titles.get(hit.id, hit.id))


def render_card(settings: Settings, hit: Hit, rank: int, title: str) -> None:
    if hit.kind == "image":
        thumb = thumbnail(hit.path, settings)
        if thumb is not None:
            st.image(thumb, width="stretch", alt=title)
        else:
            st.caption(":material/hide_image: image file not available")
    else:
        text = hit.text or ""
        st.markdown("> " + logic.markdown_escape(text[:280] + ("…" if len(text) > 280 else "")))
    st.markdown(f"**#{rank}** · score **{hit.score:.3f}**")
    if hit.kind == "image":
        st.markdown(logic.markdown_escape(title[:90]))
    badges = [logic.split_attribute(a)[1] for a in hit.attributes[:5]]
    if badges:
        st.markdown(" ".join(f":gray-badge[{logic.markdown_escape(b)}]" for b in badges if b))
    st.caption("why: " + logic.markdown_escape(logic.short_why(hit)))
    st.button("Open", key=f"open-{rank}-{hit.id}", on_click=_open_result, args=(hit,), width="stretch")


def _open_result(hit: Hit) -> None:
    st.session_state[OPENED] = hit
    st.session_state["view"] = "Detail"


# --- a result's detail ---------------------------------------------------------------------


def render_detail(settings: Settings, backend: Backend, request: logic.SearchRequest | None) -> None:
    hit: Hit | None = st.session_state.get(OPENED)
    if hit is None:
        st.info("Open a result (its **Open** button) to see its record, its graph neighbourhood and why it matched.")
        return
    store = backend.store
    record = logic.load_record(store, hit)
    st.subheader(logic.markdown_escape(record.title))
    st.caption(
        f"{hit.kind} · score {hit.score:.3f}"
        + (f" · record {logic.markdown_escape(record.id)}" if record.id else "")
        + (f" · source {logic.markdown_escape(record.source)}" if record.source else "")
    )
    left, right = st.columns([2, 3], gap="large")
    with left:
        if record.images:
            st.markdown("**Images**")
            cols = st.columns(min(3, len(record.images)))
            for i, node in enumerate(record.images[:9]):
                with cols[i % len(cols)]:
                    path = str(node.props.get("path", ""))
                    thumb = thumbnail(path, settings)
                    caption = Path(path).name + (" (this result)" if node.id == hit.id else "")
                    if thumb is not None:
                        st.image(thumb, caption=caption, width=220)
                    else:
                        st.caption(f"{logic.markdown_escape(caption)}: file not available")
        if record.texts:
            st.markdown("**Texts**")
            for node in record.texts:
                kind = str(node.props.get("kind", "text"))
                marker = " (this result)" if node.id == hit.id else ""
                text = logic.markdown_escape(str(node.props.get("text", "")))
                st.markdown(f"*{logic.markdown_escape(kind)}*{marker}: {text}")
        if record.attributes:
            st.markdown("**Attributes**")
            st.markdown(" ".join(f":gray-badge[{logic.markdown_escape(a)}]" for a in record.attributes))
    with right, st.container(key="explanation"):
        st.markdown("**Why it matched**")
        if hit.explanation.paths:
            for steps in hit.explanation.paths[:5]:
                st.markdown(path_markdown(steps))
        else:
            st.markdown(logic.markdown_escape(logic.short_why(hit)))
    st.markdown("**Graph neighbourhood** (the explanation path in orange)")
    hops = st.segmented_control(
        "Hops", [1, 2], default=1, required=True, key="hops", format_func=lambda h: f"{h} hop" + ("s" if h > 1 else "")
    )
    view = logic.neighbourhood(store, hit, hops=int(hops or 1))
    st.iframe(render_html(view), height=HEIGHT + 60, alt="graph neighbourhood of the opened result")
    st.caption(f"{len(view.nodes)} nodes, {len(view.edges)} edges; {len(view.path_edges)} on the explanation path.")


def path_markdown(steps: Sequence[Step]) -> str:
    """`query 'white shoes'` -MENTIONS-> **white** (entity) <-DEPICTS- **10003.jpg** (image), for the page."""
    parts: list[str] = []
    for step in steps:
        if step.label == "Query":
            parts.append(f":orange-badge[{logic.markdown_escape(step.name)}]")
        else:
            parts.append(f"**{logic.markdown_escape(step.name)}** ({step.label.lower()})")
        if step.rel is not None:
            rel = logic.markdown_escape(step.rel)
            parts.append(f"—{rel}→" if step.forward else f"←{rel}—")
    return " ".join(parts)


# --- the collection ------------------------------------------------------------------------


def render_collection(settings: Settings, backend: Backend, request: logic.SearchRequest | None) -> None:
    overview = logic.load_overview(backend.store, backend.home)
    st.subheader("Collection overview")
    cols = st.columns(4)
    for col, label in zip(cols, ("Image", "Text", "Entity", "Record"), strict=True):
        col.metric(f"{label} nodes", f"{overview.nodes.get(label, 0):,}")
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Nodes by type**")
        st.dataframe([{"type": k, "count": v} for k, v in overview.nodes.items()], hide_index=True, width="stretch")
        st.markdown("**Edges by type**")
        st.dataframe([{"type": k, "count": v} for k, v in overview.edges.items()], hide_index=True, width="stretch")
    with right:
        st.markdown("**Most connected entities** (images and texts linked to them)")
        st.dataframe(
            [{"entity": n, "kind": k, "links": c} for n, k, c in overview.top_entities],
            hide_index=True,
            width="stretch",
        )
    st.markdown("**Last ingest**")
    if overview.last_ingest_error:
        st.warning(overview.last_ingest_error)
    last = overview.last_ingest
    if last is None:
        st.caption("No ingest report in this workspace.")
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["_when"])) if "_when" in last else "?"
    skipped = list(last.get("skipped") or [])
    st.markdown(
        f"{logic.markdown_escape(str(last.get('source', '?')))}: **{last.get('ingested', 0)}** records ingested, "
        f"{last.get('already_present', 0)} already present, **{len(skipped)} skipped** · {when}"
    )
    if skipped:
        with st.expander(f"What was skipped ({len(skipped)})", expanded=len(skipped) <= 20):
            rows = [
                {"item": str(s.get("item", "")), "reason": str(s.get("reason", ""))}
                for s in skipped
                if isinstance(s, dict)
            ]
            st.dataframe(
                rows,
                hide_index=True,
                width="stretch",
            )


if __name__ == "__main__":
    main()
