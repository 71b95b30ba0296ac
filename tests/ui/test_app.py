"""The explorer page in Streamlit's AppTest: links, search box, upload, facets, paging, detail, overview,
and the plain messages (empty workspace, bad upload, store down, encoder not ready, a bug)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from mmkg.errors import ModelNotReadyError, StoreUnavailableError
from mmkg.retrieval.search import Hit, Query, Retriever
from mmkg.ui import logic
from mmkg.ui.backend import Backend

from .conftest import TinyCollection, WordRetriever, png_bytes

APP_FILE = Path(__file__).resolve().parents[2] / "ui" / "app.py"
TIMEOUT = 30


def _script(backend):  # type: ignore[no-untyped-def]  # its source runs as the page script
    from mmkg.ui.app import main

    main(backend=backend)


def _app(backend: Backend) -> AppTest:
    return AppTest.from_function(_script, kwargs={"backend": backend}, default_timeout=TIMEOUT)


def _texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def _cards(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**#")]


def _no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def retriever(tiny: TinyCollection) -> WordRetriever:
    return WordRetriever(tiny)


@pytest.fixture
def app(tiny: TinyCollection, retriever: WordRetriever) -> AppTest:
    return _app(Backend(tiny.settings, store=tiny.store, retrievers={"dense": retriever}))


def test_first_visit_explains_how_to_search(app: AppTest) -> None:
    app.run()
    _no_traceback(app)
    assert any("A search is a link" in i.value for i in app.info)
    assert app.text_input(key="q").value == ""
    assert app.segmented_control(key="target").value == "images"
    assert "memory (embedded)" in " ".join(c.value for c in app.sidebar.caption)


def test_shared_link_runs_the_search(app: AppTest, retriever: WordRetriever) -> None:
    app.query_params["q"] = "white shoes"
    app.query_params["target"] = "images"
    app.run()
    _no_traceback(app)
    assert app.text_input(key="q").value == "white shoes"
    query, k, target = retriever.calls[-1]
    assert query.text == "white shoes" and target == "images" and k == logic.DEFAULT_K
    assert any(t.startswith("**8 images** for 'white shoes'") for t in _texts(app))
    assert len(_cards(app)) == 8
    assert len(app.get("image")) == 8  # a thumbnail per image result
    assert any("shares shoe, white with the query" in c.value for c in app.caption)
    link = [c.value for c in app.caption if c.value.startswith("Link to this search")]
    assert link and "q=white%20shoes&target=images" in link[0]


def test_link_to_texts_shows_text_cards(app: AppTest, retriever: WordRetriever) -> None:
    app.query_params["q"] = "red"
    app.query_params["target"] = "texts"
    app.query_params["k"] = "3"
    app.run()
    _no_traceback(app)
    assert retriever.calls[-1][1:] == (3, "texts")
    assert len(_cards(app)) == 3 and not app.get("image")
    assert any(m.value.startswith("> ") and "Red" in m.value for m in app.markdown)


def test_typing_a_query_searches(app: AppTest, retriever: WordRetriever) -> None:
    app.run()
    app.text_input(key="q").input("black running shoes").run()
    _no_traceback(app)
    assert retriever.calls[-1][0].text == "black running shoes"
    assert _cards(app)[0].startswith("**#1** · score **1.000**")
    # A rerun that changes nothing (a facet, a page) does not search again.
    n = len(retriever.calls)
    app.run()
    assert len(retriever.calls) == n


def test_uploaded_image_searches_by_image(app: AppTest, retriever: WordRetriever) -> None:
    app.run()
    app.file_uploader(key="upload").set_value(("red.png", png_bytes(colour=(205, 25, 35)), "image/png"))
    app.run()
    _no_traceback(app)
    query = retriever.calls[-1][0]
    assert query.image is not None and query.text is None
    assert any("for the uploaded image 'red\\.png'" in t for t in _texts(app))
    assert not any(c.value.startswith("Link to this search") for c in app.caption)  # an upload has no link


def test_unreadable_upload_is_a_plain_message(app: AppTest, retriever: WordRetriever) -> None:
    app.run()
    app.file_uploader(key="upload").set_value(("photo.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg"))
    app.run()
    _no_traceback(app)
    assert [e.value for e in app.error] == [
        "Cannot use the uploaded file as a query image: corrupt image (cannot identify image file) : photo.jpg."
    ] or "Cannot use the uploaded file as a query image" in app.error[0].value
    assert "photo.jpg" in app.error[0].value
    assert not retriever.calls


def test_oversized_upload_is_a_plain_message(tiny: TinyCollection, retriever: WordRetriever) -> None:
    settings = tiny.settings.replace(max_image_bytes=2000)
    at = _app(Backend(settings, store=tiny.store, retrievers={"dense": retriever}))
    at.run()
    at.file_uploader(key="upload").set_value(("huge.png", png_bytes((300, 300)) + b"\0" * 5000, "image/png"))
    at.run()
    _no_traceback(at)
    assert "over the 2.0 KB limit" in at.error[0].value and "huge.png" in at.error[0].value
    assert not retriever.calls


def test_facets_narrow_the_results(app: AppTest) -> None:
    app.query_params["q"] = "white shoes"
    app.run()
    colour = next(p for p in app.pills if p.label == "Base colour")
    assert colour.options == ["White (3)", "Black (2)", "Red (2)", "Blue (1)"]
    colour.set_value(["White"]).run()
    _no_traceback(app)
    assert len(_cards(app)) == 3
    assert any(c.value == "3 of 8 results match the filters." for c in app.caption)
    kind = next(p for p in app.pills if p.label == "Article type")
    kind.set_value(["Sports Shoes"]).run()
    assert len(_cards(app)) == 2
    assert all("White" in m.value for m in app.markdown if "gray-badge" in m.value)


def test_long_result_lists_are_paged(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logic, "PER_PAGE", 3)
    app.query_params["q"] = "shoes"
    app.run()
    _no_traceback(app)
    assert [c.split(" ·")[0] for c in _cards(app)] == ["**#1**", "**#2**", "**#3**"]
    pager = app.get("pagination")[0]
    pager.set_value(3).run()  # type: ignore[union-attr]
    _no_traceback(app)
    assert [c.split(" ·")[0] for c in _cards(app)] == ["**#7**", "**#8**"]


def test_opening_a_result_shows_record_path_and_graph(app: AppTest, tiny: TinyCollection) -> None:
    app.query_params["q"] = "white shoes"
    app.run()
    open_buttons = [b for b in app.button if b.label == "Open"]
    open_buttons[0].click().run()
    _no_traceback(app)
    assert app.session_state["view"] == "Detail"
    assert app.subheader[0].value == "Nike Men White Running Shoes"
    md = [m.value for m in app.markdown]
    assert "*name*: Nike Men White Running Shoes" in md
    paths = [m for m in md if m.startswith(":orange-badge[")]
    tail = "(entity) ←DEPICTS— **Nike Men White Running Shoes** (image)"
    assert paths == [
        f":orange-badge[query 'white shoes'] —MENTIONS→ **shoe** {tail}",
        f":orange-badge[query 'white shoes'] —MENTIONS→ **white** {tail}",
    ]
    frame = app.get("iframe")
    assert len(frame) == 1
    assert any("4 on the explanation path" in c.value for c in app.caption)
    app.segmented_control(key="hops").set_value(2).run()
    _no_traceback(app)
    assert len(app.get("iframe")) == 1


def test_detail_without_an_opened_result_says_what_to_do(app: AppTest) -> None:
    app.query_params["view"] = "Detail"
    app.run()
    _no_traceback(app)
    assert any("Open a result" in i.value for i in app.info)


def test_collection_overview(app: AppTest) -> None:
    app.query_params["view"] = "Collection"
    app.run()
    _no_traceback(app)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Image nodes"] == "8" and metrics["Record nodes"] == "8"
    assert any("**8** records ingested" in m.value and "**2 skipped**" in m.value for m in app.markdown)
    frames = [d.value for d in app.dataframe]
    skipped = frames[-1]
    assert list(skipped["item"]) == ["images/broken.jpg", "../../etc/passwd"]
    entities = frames[2]
    assert entities.iloc[0]["entity"] == "men" and entities.iloc[0]["links"] == 10


def test_empty_workspace_names_the_ingest_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "empty"
    monkeypatch.setenv("MMKG_HOME", str(home))
    monkeypatch.setenv("MMKG_STORE", "memory")
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT)
    at.run()
    _no_traceback(at)
    assert not at.error
    assert "mmkg ingest" in at.info[0].value and str(home) in at.info[0].value
    assert not home.exists() or not any(home.rglob("*.json"))  # looking does not write into the workspace


def test_store_down_is_a_plain_message(tiny: TinyCollection) -> None:
    def refuse(settings: Any) -> Any:
        raise StoreUnavailableError("cannot reach Neo4j at bolt://127.0.0.1:1 (connection refused)")

    at = _app(Backend(tiny.settings.replace(store="neo4j"), store_opener=refuse))
    at.run()
    _no_traceback(at)
    assert len(at.error) == 1
    msg = at.error[0].value
    assert msg.startswith("The graph store is unavailable: cannot reach Neo4j") and "mmkg neo4j start" in msg
    assert "neo4j at bolt://" in " ".join(c.value for c in at.sidebar.caption)


def test_real_neo4j_store_down_is_a_plain_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mmkg.graph.neo4j_store")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MMKG_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("MMKG_STORE", "neo4j")
    monkeypatch.setenv("NEO4J_URI", f"bolt://127.0.0.1:{port}")
    monkeypatch.setenv("NEO4J_USER", "neo4j")
    monkeypatch.setenv("NEO4J_PASSWORD", "not-a-real-password")
    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    at.run()
    _no_traceback(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("The graph store is unavailable")


class _Failing(Retriever):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def search(self, query: Query, k: int = 10, target: str = "images") -> list[Hit]:  # type: ignore[override]
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ModelNotReadyError("no trained lit heads in .mmkg/models"), "mmkg train encoder --data"),
        (RuntimeError("index exploded"), "Something went wrong (RuntimeError: index exploded)"),
    ],
)
def test_search_failures_are_plain_messages(
    tiny: TinyCollection, exc: BaseException, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    at = _app(Backend(tiny.settings, store=tiny.store, retrievers={"dense": _Failing(exc)}))
    at.query_params["q"] = "shoes"
    at.run()
    _no_traceback(at)
    assert len(at.error) == 1 and expected in at.error[0].value


def test_backend_modes_pick_the_graph_retriever_when_present(tiny: TinyCollection) -> None:
    calls: list[str] = []

    class Named(WordRetriever):
        def __init__(self, name: str) -> None:
            super().__init__(tiny)
            self.name = name

        def search(self, query: Query, k: int = 10, target: str = "images") -> list[Hit]:  # type: ignore[override]
            calls.append(self.name)
            return super().search(query, k, target)

    backend = Backend(tiny.settings, store=tiny.store, retrievers={"graph": Named("graph"), "dense": Named("dense")})
    at = _app(backend)
    at.query_params["q"] = "shoes"
    at.run()
    _no_traceback(at)
    assert calls == ["graph"]
    at.selectbox(key="mode").set_value("dense").run()
    assert calls == ["graph", "dense"]


def test_words_no_record_states_are_named_above_the_results(tiny: TinyCollection) -> None:
    """A query word the collection never states (the retriever says which) is named, so near hits are not taken
    for exact ones; a query whose words are all stated shows no such line."""

    class Telling(WordRetriever):
        def unmatched_words(self, query: Query) -> list[str]:
            return ["perfume"] if query.text and "perfume" in query.text else []

    at = _app(Backend(tiny.settings, store=tiny.store, retrievers={"graph": Telling(tiny)}))
    at.query_params["q"] = "white perfume"
    at.run()
    _no_traceback(at)
    assert any("No record contains 'perfume'" in t for t in _texts(at))
    at.text_input(key="q").input("white shoes").run()
    assert _cards(at) and not any("No record contains" in t for t in _texts(at))


def test_a_photo_unlike_the_collection_is_told_so_above_the_results(tiny: TinyCollection) -> None:
    """A photo unlike every photo in the collection (the retriever says so) gets a line saying its hits are
    loose; a photo like the collection's does not."""

    class Telling(WordRetriever):
        def unlike_collection(self, query: Query) -> bool:
            return query.image is not None and query.image.getpixel((0, 0)) == (10, 200, 10)

    at = _app(Backend(tiny.settings, store=tiny.store, retrievers={"graph": Telling(tiny)}))
    at.run()
    at.file_uploader(key="upload").set_value(("street.png", png_bytes(colour=(10, 200, 10)), "image/png")).run()
    _no_traceback(at)
    assert _cards(at) and any(t.startswith("This photo is unlike every photo in the collection") for t in _texts(at))
    at.file_uploader(key="upload").set_value(("red.png", png_bytes(colour=(205, 25, 35)), "image/png")).run()
    assert _cards(at) and not any("unlike every photo" in t for t in _texts(at))


def test_warming_up_runs_one_search_and_never_raises(tiny: TinyCollection) -> None:
    """The explorer warms its search up while the user types; a search that fails then is reported later, by the
    user's own search, not by the warm-up."""
    retriever = WordRetriever(tiny)
    Backend(tiny.settings, store=tiny.store, retrievers={"dense": retriever}).warm_up()
    assert [(q.text, k, target) for q, k, target in retriever.calls] == [("photo", 1, "images")]
    Backend(tiny.settings, store=tiny.store, retrievers={"dense": _Failing(StoreUnavailableError("down"))}).warm_up()


def test_the_store_is_read_while_a_search_holds_the_backend(tiny: TinyCollection) -> None:
    """The explorer's first page asks the store whether it is empty while the warm-up search loads the encoders
    with the backend's lock held; it must not wait for that search (it had waited over a minute under load)."""
    backend = Backend(tiny.settings, store=tiny.store, retrievers={"dense": WordRetriever(tiny)})
    searching, done = threading.Event(), threading.Event()

    def long_search() -> None:
        with backend._lock:  # what a search holds while it loads the encoders
            searching.set()
            done.wait(30)

    worker = threading.Thread(target=long_search)
    worker.start()
    try:
        assert searching.wait(10)
        read = threading.Thread(target=lambda: logic.is_empty(backend.store))
        read.start()
        read.join(5)
        assert not read.is_alive(), "reading the store waited for the search"
    finally:
        done.set()
        worker.join()


def test_a_replaced_backend_stays_open_for_the_pages_that_hold_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest that finishes replaces the explorer's backend; a page that took the old one a moment before must
    still read its store (closed at once, a Neo4j store's reads failed), and the old one is closed after."""
    from mmkg.graph.memory import MemoryGraphStore
    from mmkg.settings import Settings
    from mmkg.ui import app

    monkeypatch.setattr(app, "RELEASE_GRACE_S", 0.5)
    store = MemoryGraphStore(tmp_path / "graph", read_only=True)
    backend = Backend(Settings(home=tmp_path), store=store)
    held = backend.store  # what a running page holds
    app._release(backend)
    assert not store._closed and logic.is_empty(held)  # still open right after the release (a Neo4j store's
    # driver, closed, fails every read)
    for _ in range(100):
        if backend._store is None:
            break
        threading.Event().wait(0.05)
    assert backend._store is None, "the replaced backend was never closed"
    assert store._closed


def test_the_page_script_holds_no_bare_string_that_streamlit_would_show() -> None:
    """Streamlit's magic writes every bare expression of the page script onto the page: an attribute docstring
    (`RELEASE_GRACE_S`'s) showed above every search. Only true docstrings (a body's first statement) are skipped."""
    import ast

    tree = ast.parse(APP_FILE.read_text(encoding="utf-8"))
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    shown = [stmt.lineno for body in bodies for stmt in body[1:]
             if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
             and isinstance(stmt.value.value, str)]
    assert shown == [], f"bare strings at lines {shown} of {APP_FILE.name} would be shown on the page"
