"""The explorer's page logic, without Streamlit: requests, uploads, facets, paging, records, paths, overview."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mmkg.errors import ModelNotReadyError, StoreUnavailableError, UserInputError
from mmkg.graph.schema import Label
from mmkg.retrieval.search import Explanation, Hit, Query, Step
from mmkg.settings import Settings
from mmkg.ui import logic
from mmkg.ui.graphview import graph_payload, render_html
from mmkg.ui.launch import command, environment

from .conftest import PRODUCTS, TinyCollection, WordRetriever, png_bytes


def _hits(tiny: TinyCollection, text: str = "white shoes", target: str = "images", k: int = 8) -> list[Hit]:
    return WordRetriever(tiny).search(Query(text=text), k=k, target=target)


# --- requests and uploads ------------------------------------------------------------------


def test_request_from_text_target_and_k() -> None:
    r = logic.make_request("  a dog on the grass ", None, "texts", 7)
    assert r is not None and r.text == "a dog on the grass" and r.target == "texts" and r.k == 7
    assert not r.is_image


def test_nothing_to_search_gives_no_request() -> None:
    assert logic.make_request(None, None, "images", 10) is None
    assert logic.make_request("   ", None, "images", 10) is None


def test_upload_wins_over_text() -> None:
    r = logic.make_request("shoes", ("q.png", b"abc"), "images", 5)
    assert r is not None and r.is_image and r.image_name == "q.png" and r.text is None


def test_hand_edited_link_values_fall_back_to_defaults() -> None:
    r = logic.make_request("shoes", None, "videos", "lots")
    assert r is not None and r.target == "images" and r.k == logic.DEFAULT_K
    assert logic.make_request("shoes", None, None, 10_000).k == logic.MAX_K  # type: ignore[union-attr]
    assert logic.make_request("shoes", None, None, -3).k == 1  # type: ignore[union-attr]


def test_signature_tells_searches_apart() -> None:
    a = logic.make_request("shoes", None, "images", 10)
    b = logic.make_request("shoes", None, "texts", 10)
    c = logic.make_request("shoes", None, "images", 10)
    assert a and b and c and a.signature != b.signature and a.signature == c.signature


def test_share_link_runs_the_same_search() -> None:
    r = logic.make_request("a dog on the grass", None, "images", logic.DEFAULT_K)
    assert r is not None
    assert logic.share_query(r) == "?q=a%20dog%20on%20the%20grass&target=images"
    r2 = logic.make_request("tea & cake", None, "texts", 5)
    assert r2 is not None and logic.share_query(r2) == "?q=tea%20%26%20cake&target=texts&k=5"
    r3 = logic.make_request(None, ("x.png", b"x"), "images", 5)
    assert r3 is not None and logic.share_query(r3) is None


def test_valid_upload_decodes_to_rgb() -> None:
    settings = Settings(max_image_bytes=1_000_000, max_image_pixels=1_000_000)
    img = logic.decode_upload("q.png", png_bytes((40, 30)), settings)
    assert img.mode == "RGB" and img.size == (40, 30)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "is empty"),
        (b"this is not an image at all", "not an image file"),
        (png_bytes((64, 64))[:60], "Cannot use the uploaded file"),
    ],
)
def test_unreadable_upload_is_a_plain_message(data: bytes, expected: str) -> None:
    settings = Settings(max_image_bytes=1_000_000, max_image_pixels=1_000_000)
    with pytest.raises(logic.UploadRejected, match=expected) as info:
        logic.decode_upload("query.jpg", data, settings)
    assert "Traceback" not in str(info.value)


def test_oversized_upload_is_refused_by_bytes_before_decoding() -> None:
    settings = Settings(max_image_bytes=1000, max_image_pixels=1_000_000)
    with pytest.raises(logic.UploadRejected, match=r"over the 1000 bytes limit"):
        logic.decode_upload("big.png", png_bytes((200, 200)) + b"\0" * 2000, settings)


def test_decompression_bomb_upload_is_refused_by_pixels() -> None:
    out = io.BytesIO()
    Image.new("1", (6000, 6000)).save(out, format="PNG")  # tiny file, 36 megapixels
    settings = Settings(max_image_bytes=10_000_000, max_image_pixels=1_000_000)
    assert len(out.getvalue()) < 100_000
    with pytest.raises(logic.UploadRejected, match="too large"):
        logic.decode_upload("bomb.png", out.getvalue(), settings)


def test_upload_limit_follows_the_image_size_guard() -> None:
    assert logic.upload_limit_mb(Settings(max_image_bytes=50_000_000)) == 47
    assert logic.upload_limit_mb(Settings(max_image_bytes=10)) == 1


# --- messages ------------------------------------------------------------------------------


def test_messages_are_one_plain_line_with_what_to_do() -> None:
    down = logic.message_for(StoreUnavailableError("cannot reach Neo4j at bolt://127.0.0.1:7687"))
    assert "mmkg neo4j start" in down and "bolt://127.0.0.1:7687" in down
    told = logic.message_for(StoreUnavailableError("connection refused — start it with `mmkg neo4j start`"))
    assert told.count("mmkg neo4j start") == 1
    assert "mmkg train encoder" in logic.message_for(ModelNotReadyError("no trained heads in .mmkg/models"))
    gnn = logic.message_for(ModelNotReadyError("the GNN was trained on other vectors: run `mmkg train gnn --data DIR`"))
    assert "mmkg train gnn" in gnn and "mmkg train encoder" not in gnn
    assert logic.message_for(UserInputError("k must be at least 1")) == "k must be at least 1"
    bug = logic.message_for(KeyError("boom"))
    assert "\n" not in bug and "server log" in bug


def test_empty_workspace_message_names_the_ingest_command(tmp_path: Path) -> None:
    msg = logic.empty_workspace_message(Settings(home=tmp_path))
    assert "mmkg ingest" in msg and str(tmp_path) in msg


# --- results, facets, paging ---------------------------------------------------------------


def test_short_why_names_shared_entities_or_says_vector_only(tiny: TinyCollection) -> None:
    hits = _hits(tiny)
    assert logic.short_why(hits[0]) == "shares shoe, white with the query"
    assert "embedding space" in logic.short_why(hits[-1])
    only_path = Hit("x", 0.5, "image", explanation=Explanation(paths=[hits[0].explanation.paths[0]]))
    assert logic.short_why(only_path) == "via shoe"
    longer = [
        Step("query", "Query", "query 'x'", "MENTIONS", True),
        Step("ent:tshirt", "Entity", "tshirt", "CO_OCCURS", False),
        Step("ent:gender:men", "Entity", "gender:men", "DEPICTS", False),
        Step("img:1", "Image", "1.jpg"),
    ]
    assert logic.short_why(Hit("y", 0.1, "image", explanation=Explanation(paths=[longer]))) == "via tshirt → gender:men"
    same = Explanation(shared_entities=["diagnosis:subdural hematoma", "subdural hematoma", "hematoma"])
    why = logic.short_why(Hit("z", 0.1, "image", explanation=same))
    assert why == "shares subdural hematoma, hematoma with the query"
    predicted = [Step("query", "Query", "query image", "PREDICTS", True),
                 Step("ent:basecolour:navy blue", "Entity", "baseColour:navy blue (predicted from the photo, 61%)",
                      "DEPICTS", False), Step("img:2", "Image", "2.jpg")]
    photo = Explanation(shared_entities=["baseColour:navy blue"], paths=[predicted])
    assert logic.short_why(Hit("p", 0.1, "image", explanation=photo)) == "states navy blue, as predicted from the photo"


def test_facets_come_from_attributes_and_entities(tiny: TinyCollection) -> None:
    hits = _hits(tiny)
    ents = logic.hit_entities(tiny.store, hits)
    first = ents[hits[0].id]
    assert "shoe" in first and not any(":" in e for e in first)  # attribute entities are facets already
    facets = {h.id: logic.hit_facets(h, ents[h.id]) for h in hits}
    groups = {g.key: g for g in logic.build_facets(facets)}
    assert dict(groups["baseColour"].values) == {"White": 3, "Black": 2, "Red": 2, "Blue": 1}
    assert groups["articleType"].label == "Article type"
    assert groups["baseColour"].label == "Base colour"
    assert list(groups)[-1] == logic.ENTITY_FACET  # entities after the attributes


def test_a_facet_that_splits_nothing_is_left_out(tiny: TinyCollection) -> None:
    hits = [h for h in _hits(tiny) if "gender:Men" in h.attributes]
    facets = {h.id: logic.hit_facets(h, []) for h in hits}
    assert "gender" not in {g.key for g in logic.build_facets(facets)}


def test_selected_facets_narrow_and_within_a_group_or_across_groups_and(tiny: TinyCollection) -> None:
    hits = _hits(tiny)
    facets = {h.id: logic.hit_facets(h, []) for h in hits}
    white = logic.apply_facets(hits, facets, {"baseColour": ["White"]})
    assert len(white) == 3 and all("baseColour:White" in h.attributes for h in white)
    white_or_red = logic.apply_facets(hits, facets, {"baseColour": ["White", "Red"]})
    assert len(white_or_red) == 5
    white_shoes = logic.apply_facets(hits, facets, {"baseColour": ["White"], "articleType": ["Sports Shoes"]})
    assert len(white_shoes) == 2
    assert logic.apply_facets(hits, facets, {"baseColour": []}) == hits


def test_paging_clamps_to_the_pages_there_are() -> None:
    items = list(range(25))
    assert logic.page_count(25, 12) == 3 and logic.page_count(0, 12) == 1
    assert logic.page_items(items, 1, 12) == list(range(12))
    assert logic.page_items(items, 3, 12) == [24, 25 - 1][:1]
    assert logic.page_items(items, 99, 12) == [24]
    assert logic.page_items(items, 0, 12) == list(range(12))


# --- records and neighbourhoods ------------------------------------------------------------


def test_record_view_holds_its_images_texts_and_attributes(tiny: TinyCollection) -> None:
    hit = _hits(tiny)[0]
    rv = logic.load_record(tiny.store, hit)
    assert rv.title == "Nike Men White Running Shoes"
    assert [n.id for n in rv.images] == [hit.id]
    assert [n.props["text"] for n in rv.texts] == ["Nike Men White Running Shoes"]
    assert "baseColour:White" in rv.attributes and rv.source == "tiny"


def test_titles_for_cards(tiny: TinyCollection) -> None:
    hits = _hits(tiny, k=3)
    titles = logic.record_titles(tiny.store, hits)
    assert titles[hits[0].id] == "Nike Men White Running Shoes"
    text_hits = _hits(tiny, target="texts", k=2)
    assert logic.record_titles(tiny.store, text_hits)[text_hits[0].id] == text_hits[0].text


def test_neighbourhood_marks_the_explanation_path(tiny: TinyCollection) -> None:
    hit = _hits(tiny)[0]
    view = logic.neighbourhood(tiny.store, hit, hops=1)
    assert view.center == hit.id and view.nodes[hit.id]["center"]
    assert view.nodes[logic.QUERY_NODE]["label"] == "Query"
    assert view.nodes[logic.QUERY_NODE]["name"] == "'white shoes'"
    # query -MENTIONS-> shoe, image -DEPICTS-> shoe: both edges on the path, in their stored direction
    assert (logic.QUERY_NODE, "ent:shoe", "MENTIONS") in view.path_edges
    assert (hit.id, "ent:shoe", "DEPICTS") in view.path_edges
    on_path = {(e["src"], e["dst"], e["type"]) for e in view.edges if e["path"]}
    assert on_path == view.path_edges
    assert {n for n, d in view.nodes.items() if d["path"]} == view.path_nodes
    assert tiny.text_of["p1"] in view.nodes  # the record's text is in the neighbourhood


def test_neighbourhood_keeps_path_nodes_beyond_the_cap(tiny: TinyCollection) -> None:
    hit = _hits(tiny)[0]
    view = logic.neighbourhood(tiny.store, hit, hops=2, max_nodes=2)
    assert "ent:shoe" in view.nodes and "ent:white" in view.nodes
    assert len(view.nodes) <= 2 + len(view.path_nodes)


# --- overview ------------------------------------------------------------------------------


def test_overview_counts_top_entities_and_last_ingest(tiny: TinyCollection) -> None:
    ov = logic.load_overview(tiny.store, tiny.settings.home)
    assert ov.nodes[Label.IMAGE.value] == len(PRODUCTS) and ov.nodes[Label.RECORD.value] == len(PRODUCTS)
    assert ov.edges["HAS"] == 2 * len(PRODUCTS)
    top = {n: (kind, links) for n, kind, links in ov.top_entities}
    assert ov.top_entities[0] == ("men", "noun", 10)  # five names mention it, five images depict it
    assert top["gender:men"] == ("attribute", 5)
    assert ov.last_ingest is not None and ov.last_ingest["ingested"] == len(PRODUCTS)
    assert [s["item"] for s in ov.last_ingest["skipped"]] == ["images/broken.jpg", "../../etc/passwd"]
    assert not ov.empty


def test_a_damaged_ingest_report_is_a_message_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "last_ingest.json").write_text("{not json")
    last, error = logic.read_last_ingest(tmp_path)
    assert last is None and error is not None and "last_ingest.json" in error
    (tmp_path / "last_ingest.json").write_text(json.dumps([1, 2]))
    assert logic.read_last_ingest(tmp_path)[1] == "last_ingest.json is not a JSON object"
    assert logic.read_last_ingest(tmp_path / "nowhere") == (None, None)


def test_markdown_escape_shows_text_literally() -> None:
    assert logic.markdown_escape("[x](javascript:alert(1)) *a* $x$ <b>") == (
        "\\[x\\]\\(javascript\\:alert\\(1\\)\\) \\*a\\* \\$x\\$ \\<b\\>"
    )


def test_thumbnail_is_a_square_jpeg_or_none(tiny: TinyCollection, tmp_path: Path) -> None:
    data = logic.make_thumbnail(tiny.images_dir / "p1.png", tiny.settings, size=64)
    assert data is not None
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.size == (64, 64)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert logic.make_thumbnail(tmp_path / "bad.jpg", tiny.settings) is None
    assert logic.make_thumbnail(tmp_path / "missing.jpg", tiny.settings) is None


# --- the graph drawing ---------------------------------------------------------------------


def test_graph_html_is_self_contained_and_escapes_collection_text(tiny: TinyCollection) -> None:
    hit = _hits(tiny)[0]
    evil = "</script><script>alert(1)</script>"
    hit.explanation.paths[0] = [
        Step("query", "Query", f"query {evil!r}", "MENTIONS", True),
        *hit.explanation.paths[0][1:],
    ]
    view = logic.neighbourhood(tiny.store, hit)
    page = render_html(view)
    assert page.count("<script>") == 1 and page.count("</script>") == 1
    assert "alert(1)" in page and "\\u003c/script\\u003e" in page
    for banned in ("http://", "https://", "src="):
        assert banned not in page.replace("http://www.w3.org/2000/svg", "")


def test_graph_layout_puts_the_result_in_the_middle(tiny: TinyCollection) -> None:
    hit = _hits(tiny)[0]
    data = graph_payload(logic.neighbourhood(tiny.store, hit), width=800, height=500)
    pos = {n["id"]: (n["x"], n["y"]) for n in data["nodes"]}
    assert all(0 <= x <= 800 and 0 <= y <= 500 for x, y in pos.values())
    qx, _ = pos[logic.QUERY_NODE]
    cx, _ = pos[hit.id]
    assert qx < cx  # the query sits left of the result


# --- launching -----------------------------------------------------------------------------


def test_launch_passes_the_settings_through_the_environment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws", store="neo4j", neo4j_uri="bolt://127.0.0.1:7999", neo4j_password="pw")
    env = environment(settings, base={"PATH": "/usr/bin", "NEO4J_URI": "bolt://elsewhere:1"})
    assert env["MMKG_HOME"] == str((tmp_path / "ws").resolve())
    assert env["MMKG_STORE"] == "neo4j" and env["NEO4J_URI"] == "bolt://127.0.0.1:7999"
    assert env["NEO4J_PASSWORD"] == "pw" and env["PATH"] == "/usr/bin"
    import os

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        loaded = Settings.load()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert loaded.home == (tmp_path / "ws").resolve() and loaded.store == "neo4j"
    assert loaded.neo4j_uri == "bolt://127.0.0.1:7999" and loaded.neo4j_password == "pw"
    assert loaded.max_image_bytes == settings.max_image_bytes


def test_launch_command_is_headless_with_an_upload_limit_and_no_tracebacks() -> None:
    cmd = command(Settings(max_image_bytes=5 << 20), port=8765)
    text = " ".join(cmd)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app.py")
    assert "--server.port 8765" in text and "--server.headless true" in text
    assert "--server.maxUploadSize 5" in text and "--client.showErrorDetails none" in text
    assert "--browser.gatherUsageStats false" in text


def test_retrieval_modes_are_the_ranking_engine_s(tmp_path: Path) -> None:
    """Every mode works right after ingest (the GNN propagation needs no training), `full` first."""
    from mmkg.ui.backend import available_modes

    assert available_modes(Settings(home=tmp_path)) == ["full", "gnn", "encoder"]
