"""The HTTP API on a real ingested collection, through FastAPI's TestClient (the real app, in process)."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmkg.cli import main
from mmkg.service.app import create_app
from mmkg.settings import Settings

TOKEN = "s3cret-token"


@pytest.fixture
def client(api_home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(api_home))) as c:
        yield c


def api_settings(home: Path, **overrides: Any) -> Settings:
    return Settings.load(home=home, store="memory", **overrides)


def png(size: tuple[int, int] = (40, 40), colour: tuple[int, int, int] = (240, 240, 240)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def assert_error(response: Any, status: int, needle: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and needle in body["error"] and "Traceback" not in body["error"]


def test_search_returns_exactly_what_the_cli_prints(
    client: TestClient, api_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for query, target in (("white sports shoes for men", "images"), ("a blue shirt", "texts"),
                          ("perfume for men", "images")):
        api = client.post("/search", json={"text": query, "k": 5, "target": target})
        assert api.status_code == 200, api.text
        cli = cli_json(capsys, "search", query, "-k", "5", "--target", target, "--home", str(api_home))
        assert api.json() == cli
        assert all(hit["record"].startswith("rec:fashion:") for hit in api.json()["results"])
        assert "perfume" not in query or api.json()["unmatched_words"] == ["perfume"]  # the catalog sells none


def test_image_search_by_upload(client: TestClient, catalog_dir: Path, api_home: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    image = next(catalog_dir.glob("images/*.jpg"))
    r = client.post("/search/image", files={"file": (image.name, image.read_bytes(), "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert Path(hits[0]["path"]).name == image.name  # an indexed image finds itself first
    cli = cli_json(capsys, "search", "--image", str(image), "-k", "3", "--home", str(api_home))
    assert hits == cli["results"]
    filtered = client.post("/search/image", files={"file": ("q.png", png(), "image/png")},
                           data={"k": "3", "where": json.dumps({"gender": "Men"}), "target": "texts"})
    assert filtered.status_code == 200 and all("gender:Men" in h["attributes"] for h in filtered.json()["results"])


def test_bad_uploads_are_refused_clearly(api_home: Path) -> None:
    settings = api_settings(api_home, max_image_bytes=20_000, max_image_pixels=250_000)
    with TestClient(create_app(settings)) as client:
        big = client.post("/search/image", files={"file": ("big.bin", b"\0" * 200_000, "image/png")})
        assert_error(big, 413, "larger than")
        bomb = client.post("/search/image", files={"file": ("bomb.png", png((1000, 1000)), "image/png")})
        assert_error(bomb, 413, "too large")
        junk = client.post("/search/image", files={"file": ("x.png", b"not an image", "image/png")})
        assert_error(junk, 400, "not an image")
        assert_error(client.post("/search/image", files={"file": ("e.png", b"", "image/png")}), 400, "empty")
        bad_where = client.post("/search/image", files={"file": ("q.png", png(), "image/png")}, data={"where": "x"})
        assert_error(bad_where, 400, "JSON object")


def test_items_similar_and_explain(client: TestClient) -> None:
    hit = client.post("/search", json={"text": "white shoes", "k": 1}).json()["results"][0]
    item = client.get(f"/items/{hit['id']}")
    assert item.status_code == 200 and item.json()["records"] == [hit["record"]]
    assert any(e["id"].startswith("ent:basecolour:") for e in item.json()["entities"])
    record = client.get(f"/items/{hit['record']}").json()
    assert hit["id"] in {m["id"] for m in record["members"]}

    similar = client.get(f"/items/{hit['id']}/similar", params={"k": 4})
    assert similar.status_code == 200, similar.text
    ids = [h["id"] for h in similar.json()["results"]]
    assert len(ids) == 4 and hit["id"] not in ids
    texts = client.get(f"/items/{hit['id']}/similar", params={"k": 2, "target": "texts"}).json()["results"]
    assert [h["kind"] for h in texts] == ["text", "text"]

    why = client.post("/explain", json={"text": "white shoes", "id": hit["id"]})
    assert why.status_code == 200 and why.json()["paths"]
    assert_error(client.get("/items/img:nope"), 404, "img:nope")
    assert_error(client.get("/items/img:nope/similar"), 404, "img:nope")


def test_errors_are_json_with_the_right_status(client: TestClient) -> None:
    assert_error(client.post("/search", json={"text": "shoes", "k": 0}), 422, "k")
    assert_error(client.post("/search", json={"k": 3}), 422, "text")
    assert_error(client.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_error(client.post("/search", json={"text": "shoes", "where": {"baseColour": "Plaid"}}), 400, "baseColour")
    assert_error(client.post("/search", json={"text": "shoes", "target": "audio"}), 422, "target")
    assert_error(client.post("/explain", json={"text": "shoes", "id": "txt:404"}), 400, "txt:404")
    assert_error(client.get("/no/such/route"), 404)
    assert_error(client.get("/jobs/nope"), 404, "nope")
    assert client.get("/docs").status_code == 200
    assert {"/search", "/search/image", "/ingest", "/stats"} <= set(client.get("/openapi.json").json()["paths"])


def test_every_endpoint_but_healthz_needs_the_token(api_home: Path) -> None:
    with TestClient(create_app(api_settings(api_home, api_token=TOKEN))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        for method, path in (("post", "/search"), ("get", "/stats"), ("get", "/docs"), ("get", "/openapi.json"),
                             ("delete", "/records/x"), ("get", "/items/x"), ("post", "/ingest")):
            assert_error(getattr(client, method)(path), 401, "bearer token")
            wrong = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
            assert_error(wrong, 401)
        ok = client.post("/search", json={"text": "shoes", "k": 2}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 2


def test_a_deleted_record_never_comes_back(client: TestClient) -> None:
    first = client.post("/search", json={"text": "white shoes", "k": 1}).json()["results"][0]
    rid, iid = first["record"], first["id"]
    other = next(h for h in client.post("/search", json={"text": "shirt", "k": 5}).json()["results"]
                 if h["record"] != rid)
    product = rid.rsplit(":", 1)[1]
    before = client.get("/stats").json()
    r = client.delete(f"/records/{product}")  # the catalog's own product id
    assert r.status_code == 200 and r.json() == {"deleted": [rid]}
    after = client.get("/stats").json()
    assert after["nodes"]["Record"] == before["nodes"]["Record"] - 1
    assert after["vectors"]["images"] == before["vectors"]["images"] - 1 and after["revision"] > before["revision"]

    for query in ("white shoes", "shoes", "shirt"):
        for target in ("images", "texts"):
            hits = client.post("/search", json={"text": query, "k": 50, "target": target}).json()["results"]
            assert rid not in {h["record"] for h in hits}
    similar = client.get(f"/items/{other['id']}/similar", params={"k": 50}).json()["results"]
    assert iid not in {h["id"] for h in similar}
    assert_error(client.get(f"/items/{iid}"), 404)
    assert_error(client.get(f"/items/{iid}/similar"), 404)
    assert_error(client.post("/explain", json={"text": "white shoes", "id": iid}), 400)
    assert_error(client.delete(f"/records/{product}"), 404, product)


def test_ingest_job_inside_the_root_only(api_home: Path, catalog_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(catalog_dir, root / "more")
    rows = (root / "more" / "products.csv").read_text().splitlines()
    (root / "more" / "products.csv").write_text("\n".join(rows[:4]) + "\n")  # 3 products, as source "more"
    (tmp_path / "outside").mkdir()
    with TestClient(create_app(api_settings(api_home))) as client:
        assert_error(client.post("/ingest", json={"path": "more"}), 403, "--ingest-root")
    with TestClient(create_app(api_settings(api_home), ingest_root=root)) as client:
        for bad in ("../outside", str(tmp_path / "outside"), "/etc", "more/../../outside"):
            assert_error(client.post("/ingest", json={"path": bad}), 403, "inside the ingest root")
        assert_error(client.post("/ingest", json={"path": "missing"}), 404)
        assert_error(client.post("/ingest", json={"path": "more", "mapping": "../outside/m.json"}), 403)
        r = client.post("/ingest", json={"path": "more", "sync": False})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["state"] == "done", job
        assert job["report"]["ingested"] == 3 and job["progress"] == {"done": 3, "total": 3}
        assert client.get("/stats").json()["nodes"]["Record"] == 20 + 3  # the served view was reloaded
