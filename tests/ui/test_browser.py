"""The explorer end to end in a real browser: headless Debian Chromium driven by Playwright.

A workspace is built from scratch the way a user builds one: lit heads trained for a few steps on 64
Flickr8k training images, then 40 products of the fashion catalog ingested by the real pipeline. The
app is started with `mmkg.ui.launch.start` (what `mmkg ui` runs) on a free port, and the tests type a
query, open a shared link, upload images, filter, open a result and look at its explanation path and
graph, and the collection overview. Screenshots go to `artifacts/ui/` (or $MMKG_ARTIFACTS).

Needs /usr/bin/chromium (scripts/install_browser.sh) or $MMKG_CHROMIUM, and ../shared/data.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmkg.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MMKG_SHARED", REPO.parent / "shared"))
FASHION = SHARED / "data" / "fashion"
FLICKR_TRAIN = SHARED / "data" / "flickr8k" / "train"
CHROMIUM = os.environ.get("MMKG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("MMKG_ARTIFACTS", REPO / "artifacts")) / "ui"
N_PRODUCTS = 40
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SEARCH_TIMEOUT_MS = 180_000  # the first search loads the encoder and builds the graph state: slow on 2 busy cores
STEP_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_catalog(dst: Path, n: int) -> list[dict[str, str]]:
    (dst / "images").mkdir(parents=True)
    with open(FASHION / "products.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    for row in rows:
        shutil.copy(FASHION / row["image"], dst / row["image"])
    with open(dst / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def build_workspace(root: Path) -> Settings:
    """Train small lit heads and ingest the first products of the fashion catalog (plus one broken image)."""
    from mmkg.collection import open_collection
    from mmkg.ingest.detect import open_source
    from mmkg.ingest.pipeline import Ingestor
    from mmkg.training.lit_train import train_lit

    settings = Settings.load(home=root / "ws", store="memory", encoder="lit")
    train_lit(FLICKR_TRAIN, settings, max_images=64, epochs=2, holdout=0, hflip=False, hidden=256, progress=False)
    catalog = root / "fashion"
    _copy_catalog(catalog, N_PRODUCTS)
    # One unreadable image, so the overview has something skipped to show.
    (catalog / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with open(catalog / "products.csv", "a", newline="", encoding="utf-8") as fh:
        fh.write("99999,images/broken.jpg,Broken Image Socks,Men,Accessories,Socks,Socks,Black,Fall,2012,Casual\n")
    source = open_source(catalog)
    with open_collection(settings) as col:
        ingestor = Ingestor(settings, col.store, col.vectors, col.encoder)
        report = ingestor.run(source.records(), source.name, progress=False)
    assert report.ingested >= N_PRODUCTS, report.to_json()
    return settings


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    reuse = os.environ.get("MMKG_TEST_EXPLORER_HOME")
    if reuse:  # a workspace build_workspace() made before (when working on these tests): skips a minute
        return Settings.load(home=Path(reuse), store="memory", encoder="lit")
    if not (FASHION / "products.csv").is_file() or not (FLICKR_TRAIN / "captions.jsonl").is_file():
        pytest.skip(f"the shared data sets are not at {SHARED / 'data'}")
    return build_workspace(tmp_path_factory.mktemp("explorer"))


@contextlib.contextmanager
def serve(settings: Settings, log_path: Path) -> Iterator[str]:
    """The explorer started as `mmkg ui` starts it, on a free port; its URL once it answers."""
    from mmkg.ui.launch import start

    port = _free_port()
    with open(log_path, "wb") as log:
        proc = start(settings, port=port, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the explorer exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:  # noqa: S310 - localhost
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the explorer did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / log_path.name)


@pytest.fixture(scope="module")
def app_url(workspace: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(workspace, tmp_path_factory.mktemp("explorer-log") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (or set MMKG_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1800},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what the page showed when the test failed
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
    pg.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _no_traceback(page: Any) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert "Traceback" not in page.locator("[data-testid=stMain]").inner_text()


def _wait_results(page: Any, header: str) -> None:
    """Until the results header names this search and the first card's thumbnail has loaded."""
    page.get_by_text(re.compile(r"\d+ (images|texts) for " + re.escape(header))).wait_for(timeout=SEARCH_TIMEOUT_MS)
    page.locator(".st-key-result-1").wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)


def _wait_idle(page: Any) -> None:
    """Until Streamlit has finished the current run (no stale elements, no running indicator)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-stale=\"true\"]') && "
        "!document.querySelector('[data-testid=stStatusWidget] [data-testid=stStatusWidgetRunningIcon]')",
        timeout=STEP_TIMEOUT_MS,
    )
    page.wait_for_timeout(300)


def _loaded_thumbnails(page: Any) -> int:
    return int(
        page.evaluate(
            "() => Array.from(document.querySelectorAll('[class*=st-key-result-] img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length"
        )
    )


def _card_count(page: Any) -> int:
    return int(page.locator("[class*='st-key-result-']").count())


# --- the tests -----------------------------------------------------------------------------


def test_typing_a_query_shows_images_and_makes_a_link(page: Any, app_url: str) -> None:
    page.goto(app_url)
    page.get_by_text("A search is a link").wait_for(timeout=STEP_TIMEOUT_MS)
    box = page.get_by_role("textbox", name="Search text")
    box.fill("black tshirt for men")
    box.press("Enter")
    _wait_results(page, "'black tshirt for men'")
    _no_traceback(page)
    assert _card_count(page) == 12  # k=24: the first page of two
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[class*=st-key-result-] img'))"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= 12",
        timeout=STEP_TIMEOUT_MS,
    )
    assert _loaded_thumbnails(page) >= 12
    assert re.search(r"[?&]q=black(\+|%20)tshirt(\+|%20)for(\+|%20)men", page.url)  # the address is the link
    assert page.get_by_text("Link to this search").is_visible()
    assert page.get_by_text(re.compile(r"score \d\.\d{3}")).first.is_visible()
    assert page.locator("[data-testid=stSidebar]").get_by_text("memory (embedded)").is_visible()
    _shot(page, "01-text-search")

    # Paging: the second page shows results 13 to 24.
    page.locator("[data-testid=stPagination], .stPagination").get_by_text("2", exact=True).first.click()
    page.locator(".st-key-result-13").wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)
    assert page.locator(".st-key-result-1").count() == 0
    _shot(page, "02-second-page")


def test_a_shared_link_runs_its_search(page: Any, app_url: str) -> None:
    page.goto(f"{app_url}/?q=blue%20skirt&target=images")
    _wait_results(page, "'blue skirt'")
    _no_traceback(page)
    from playwright.sync_api import expect

    # The box takes the link's query from the page address as the browser renders it, which can land a moment
    # after the results (seen once under a full suite's load): wait for it, as a user would see it.
    expect(page.get_by_role("textbox", name="Search text")).to_have_value("blue skirt", timeout=STEP_TIMEOUT_MS)
    assert _card_count(page) >= 4
    _shot(page, "03-shared-link-images")

    page.goto(f"{app_url}/?q=navy%20blue%20t-shirt&target=texts&k=6")
    _wait_results(page, "'navy blue t-shirt'")
    _no_traceback(page)
    assert page.get_by_text(re.compile(r"^6 texts for")).is_visible()
    assert _card_count(page) == 6 and page.locator("[class*=st-key-result-] img").count() == 0
    assert page.locator("[class*=st-key-result-] blockquote").count() == 6  # text cards
    _shot(page, "04-shared-link-texts")


def test_facets_narrow_the_results(page: Any, app_url: str) -> None:
    page.goto(f"{app_url}/?q=shoes&target=images")
    _wait_results(page, "'shoes'")
    colour = page.get_by_text("Base colour", exact=True).locator("xpath=ancestor::*[@data-testid='stButtonGroup'][1]")
    if colour.count() == 0:  # the label sits beside the group, not inside it
        colour = page.locator("[data-testid=stButtonGroup]").filter(has=page.get_by_text("Base colour", exact=True))
    first = colour.locator("button").first
    label = first.inner_text()
    value, count = re.match(r"(.+) \((\d+)\)$", label.strip()).groups()  # type: ignore[union-attr]
    first.click()
    page.get_by_text(f"{count} of 24 results match the filters.").wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)
    _no_traceback(page)
    assert _card_count(page) == min(int(count), 12)
    badges = page.locator("[class*=st-key-result-]").all_inner_texts()
    assert all(value in b for b in badges)
    _shot(page, "05-facet-filter")


def test_uploading_an_image_searches_by_it(page: Any, app_url: str) -> None:
    page.goto(app_url)
    page.get_by_text("A search is a link").wait_for(timeout=STEP_TIMEOUT_MS)
    query_image = FASHION / "images" / "10005.jpg"
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(query_image))
    _wait_results(page, "the uploaded image '10005.jpg'")
    _no_traceback(page)
    assert _card_count(page) == 12
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[class*=st-key-result-] img'))"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= 12",
        timeout=STEP_TIMEOUT_MS,
    )
    _shot(page, "06-image-upload")


def test_an_unreadable_upload_is_a_plain_message(page: Any, app_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    page.goto(app_url)
    page.get_by_text("A search is a link").wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(bad))
    alert = page.locator("[data-testid=stAlert]").filter(has_text="Cannot use the uploaded file as a query image")
    alert.wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)
    _no_traceback(page)
    assert "holiday.jpg" in alert.inner_text()
    _shot(page, "07-bad-upload")


def test_opening_a_result_shows_its_record_and_explanation_path(page: Any, app_url: str) -> None:
    page.goto(f"{app_url}/?q=white%20tshirt%20for%20women&target=images")
    _wait_results(page, "'white tshirt for women'")
    page.locator(".st-key-result-1").get_by_role("button", name="Open").click()
    explanation = page.locator(".st-key-explanation")
    explanation.wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)
    _no_traceback(page)
    assert page.get_by_role("tab", name="Detail").get_attribute("aria-selected") == "true"
    why = explanation.inner_text()
    assert "Why it matched" in why and "query 'white tshirt for women'" in why
    assert re.search(r"(MENTIONS|DEPICTS|CO_OCCURS)", why)
    assert page.get_by_text("(this result)").first.is_visible()  # the record's own image is marked
    assert page.get_by_text("Attributes", exact=True).is_visible()

    frame = page.frame_locator("iframe[title='graph neighbourhood of the opened result']")
    frame.locator("body[data-ready='1']").wait_for(timeout=STEP_TIMEOUT_MS)
    assert frame.locator("line.edge.path").count() >= 2  # the path, highlighted
    assert frame.locator("g.node.path").count() >= 3  # query, an entity, the result
    assert frame.locator("g.node.center").count() == 1
    assert frame.locator("g.node[data-label=Query]").count() == 1
    page.locator("iframe[title='graph neighbourhood of the opened result']").scroll_into_view_if_needed()
    _shot(page, "08-result-detail")

    # Interactive: `path only` dims everything off the path; clicking a node focuses on it.
    frame.locator("#path-only").check()
    dimmed = frame.locator("g.node.dim").count()
    assert dimmed == frame.locator("g.node").count() - frame.locator("g.node.path").count()
    _shot(page, "09-path-only")
    frame.locator("#path-only").uncheck()
    frame.locator("g.node.center circle").click()
    assert frame.locator("g.node.center.dim").count() == 0


def test_a_chinese_query_renders_as_glyphs(page: Any, app_url: str) -> None:
    """CJK text is shown as it was typed (no mojibake) in a font that has its glyphs (no boxes)."""
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False).stdout
    assert fonts.strip(), "no CJK font installed: run scripts/install_browser.sh"
    page.goto(f"{app_url}/?q=%E7%99%BD%E8%89%B2%E8%BF%90%E5%8A%A8%E9%9E%8B&target=images")  # 白色运动鞋
    _wait_results(page, "'白色运动鞋'")
    _no_traceback(page)
    assert _card_count(page) >= 1
    # A glyph is about a square em wide; a missing-glyph box is narrower and the same for every character.
    widths = page.evaluate(
        """() => ['白', '色', '鞋'].map(ch => {
            const s = document.createElement('span'); s.textContent = ch; s.style.fontSize = '40px';
            document.body.appendChild(s); const w = s.getBoundingClientRect().width; s.remove(); return w; })"""
    )
    assert all(w > 30 for w in widths), widths
    _shot(page, "cjk-query")


def test_collection_overview(page: Any, app_url: str, workspace: Settings) -> None:
    page.goto(f"{app_url}/?view=Collection")
    page.get_by_text("Collection overview").wait_for(timeout=STEP_TIMEOUT_MS)
    _wait_idle(page)
    _no_traceback(page)
    metric = page.locator("[data-testid=stMetric]").filter(has_text="Image nodes")
    assert metric.inner_text().split()[-1] == str(N_PRODUCTS)
    assert page.get_by_text("Most connected entities").is_visible()
    report = json.loads((Path(workspace.home) / "last_ingest.json").read_text())
    last = page.get_by_text(re.compile(r"records ingested")).inner_text()
    assert f"{report['ingested']} records ingested" in last and "1 skipped" in last
    assert page.get_by_text("What was skipped (1)").is_visible()
    _shot(page, "10-collection-overview")


def test_plain_messages_for_an_empty_workspace_and_a_store_that_is_down(page: Any, tmp_path: Path) -> None:
    empty = Settings.load(home=tmp_path / "empty-ws", store="memory")
    with serve(empty, tmp_path / "streamlit-empty.log") as url:
        page.goto(url)
        note = page.locator("[data-testid=stAlert]").filter(has_text="holds no collection yet")
        note.wait_for(timeout=STEP_TIMEOUT_MS)
        _no_traceback(page)
        assert "mmkg ingest" in note.inner_text()
        _shot(page, "11-empty-workspace")

    port = _free_port()  # nothing listens there
    down = Settings.load(
        home=tmp_path / "neo4j-ws", store="neo4j", neo4j_uri=f"bolt://127.0.0.1:{port}", neo4j_password="secret"
    )
    with serve(down, tmp_path / "streamlit-neo4j-down.log") as url:
        page.goto(url)
        alert = page.locator("[data-testid=stAlert]").filter(has_text="The graph store is unavailable")
        alert.wait_for(timeout=STEP_TIMEOUT_MS)
        _no_traceback(page)
        assert "mmkg neo4j start" in alert.inner_text()
        _shot(page, "12-neo4j-down")
