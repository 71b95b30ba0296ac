"""A living catalog: edited rows are replaced, deleted ones leave the graph and every index, and the
result always equals a fresh ingest of what the source holds now (kill -9 in the middle included)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmkg.cli import main
from mmkg.encoders.colour import BINS, COLOUR_VERSION
from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.schema import Label, Rel
from mmkg.index.faiss_index import FaissIndex
from mmkg.ingest import batch, pipeline
from mmkg.ingest.entities import EXTRACTION_VERSION, Entity


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def read_rows(catalog: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(catalog / "products.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_rows(catalog: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with open(catalog / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def snapshot(home: Path) -> dict[str, Any]:
    """Everything a search can see: nodes (with what they say), edges, and the ids each index holds."""
    store = MemoryGraphStore(home / "graph", read_only=True)
    skip = {"path", "record", "complete", "content_hash"}
    nodes = {n.id: {k: v for k, v in n.props.items() if k not in skip} for lb in Label for n in store.iter_nodes(lb)}
    edges = {(e.src, e.dst, str(e.type)): e.props.get("source") for rel in Rel for e in store.iter_edges(rel)}
    cooc = {(e.src, e.dst): e.props.get("count") for e in store.iter_edges(Rel.CO_OCCURS)}
    store.close()
    vectors = {}
    for kind in ("images", "texts", "entities"):
        folder = home / "index" / kind
        dim = json.loads((folder / "manifest.json").read_text())["dim"]
        vectors[kind] = sorted(FaissIndex.open(folder, dim).ids())
    return {"nodes": nodes, "edges": edges, "cooccurs": cooc, "vectors": vectors}


def fresh_snapshot(home: Path, catalog: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The state a new workspace reaches by ingesting the catalog as it is now."""
    fresh = tmp / f"fresh-{time.monotonic_ns()}"
    shutil.copytree(home / "models", fresh / "models")
    if (home / "cache").exists():
        shutil.copytree(home / "cache", fresh / "cache")
    assert main(["ingest", str(catalog), "--home", str(fresh), "--quiet", "--json"]) == 0
    capsys.readouterr()
    return snapshot(fresh)


def texts_of(snap: dict[str, Any]) -> set[str]:
    return {str(p.get("text")) for nid, p in snap["nodes"].items() if nid.startswith("txt:")}


@pytest.fixture
def catalog(home: Path, fashion_subset: Any) -> Path:
    return fashion_subset(home.parent / "fashion", 16)


def test_an_edited_row_replaces_the_old_record(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, tmp_path: Path
) -> None:
    assert run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")["ingested"] == 16
    fields, rows = read_rows(catalog)
    old_name, old_colour = rows[0]["productDisplayName"], rows[0]["baseColour"]
    rows[0]["productDisplayName"] = "Quokka Velvet Parka"
    rows[0]["baseColour"] = "Magenta"
    write_rows(catalog, fields, rows)

    again = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert (again["updated"], again["ingested"], again["already_present"]) == (1, 0, 15)
    snap = snapshot(home)
    assert old_name not in texts_of(snap) and "Quokka Velvet Parka" in texts_of(snap)
    rid = f"rec:fashion:{rows[0]['id']}"
    assert f"baseColour:{old_colour}" not in snap["nodes"][rid]["attributes"]
    assert "baseColour:Magenta" in snap["nodes"][rid]["attributes"]
    assert snap == fresh_snapshot(home, catalog, tmp_path, capsys)  # nothing stale: texts, attribute links, vectors

    hits = run_json(capsys, "search", "Quokka Velvet Parka", "--target", "texts", "-k", "50", "--home", str(home))
    found = [h["text"] for h in hits["results"]]
    assert "Quokka Velvet Parka" in found and old_name not in found
    magenta = run_json(capsys, "search", "a parka", "--where", "baseColour=Magenta", "--home", str(home))
    assert [h["record"] for h in magenta["results"]] == [rid]
    same = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert (same["updated"], same["already_present"]) == (0, 16)


def test_a_workspace_ingested_by_an_older_extraction_gets_the_new_entities(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade that changes entity extraction (`chest x` and `ray` for `chest x-ray` before the
    fourteenth session's fix), ingesting the same source again extracts every record again: the old entities go,
    and the workspace equals a fresh ingest. Until then it kept the old entities for good."""
    real = pipeline.extract_entities

    def older(texts: Sequence[str]) -> list[list[Entity]]:  # what an older extraction found: one entity more
        return [[*ents, Entity("chest x", "concept")] for ents in real(texts)]

    monkeypatch.setattr(batch, "EXTRACTION_VERSION", EXTRACTION_VERSION - 1)
    monkeypatch.setattr(pipeline, "extract_entities", older)
    assert run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")["ingested"] == 16
    assert "ent:chest x" in snapshot(home)["nodes"]
    monkeypatch.undo()

    again = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert (again["updated"], again["already_present"]) == (16, 0)
    snap = snapshot(home)
    assert "ent:chest x" not in snap["nodes"]
    assert snap == fresh_snapshot(home, catalog, tmp_path, capsys)
    same = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert (same["updated"], same["already_present"]) == (0, 16)


def test_a_workspace_ingested_before_colour_descriptors_gets_them_on_its_next_ingest(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Image node holds its photo's colour descriptor, which photo search reads (the `colour` signal). A
    workspace whose images were described otherwise (or not at all) gets the current descriptors when the same
    source is ingested again, and then equals a fresh ingest."""
    monkeypatch.setattr(batch, "COLOUR_VERSION", COLOUR_VERSION - 1)
    monkeypatch.setattr(batch, "colour_descriptor", lambda image: np.eye(BINS, dtype=np.float32)[0])
    assert run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")["ingested"] == 16
    old = {nid: p["colour"] for nid, p in snapshot(home)["nodes"].items() if nid.startswith("img:")}
    assert len(old) == 16 and all(c == [1.0] + [0.0] * (BINS - 1) for c in old.values())
    monkeypatch.undo()

    again = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert (again["updated"], again["already_present"]) == (16, 0)
    snap = snapshot(home)
    colours = {nid: p["colour"] for nid, p in snap["nodes"].items() if nid.startswith("img:")}
    assert colours.keys() == old.keys() and all(len(c) == BINS and c != old[nid] for nid, c in colours.items())
    assert snap == fresh_snapshot(home, catalog, tmp_path, capsys)


def test_delete_and_sync_remove_records_from_graph_and_indexes(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, tmp_path: Path
) -> None:
    run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    fields, rows = read_rows(catalog)
    gone_pid, synced_pid = rows[3]["id"], rows[5]["id"]

    out = run_json(capsys, "delete", gone_pid, "--home", str(home))  # the catalog's own product id
    assert out["deleted"] == [f"rec:fashion:{gone_pid}"]
    code = main(["delete", "no-such-product", "--home", str(home)])
    assert code == 2 and "no record 'no-such-product'" in capsys.readouterr().err

    write_rows(catalog, fields, [r for r in rows if r["id"] != synced_pid])
    report = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet", "--sync")
    # The row deleted with `mmkg delete` is still in the file, so it comes back; the removed row goes.
    assert report["deleted"] == [f"rec:fashion:{synced_pid}"] and report["ingested"] == 1
    assert snapshot(home) == fresh_snapshot(home, catalog, tmp_path, capsys)

    write_rows(catalog, fields, [r for r in rows if r["id"] not in (synced_pid, gone_pid)])
    run_json(capsys, "delete", f"rec:fashion:{gone_pid}", "--home", str(home))  # the internal id works too
    snap = snapshot(home)
    assert snap == fresh_snapshot(home, catalog, tmp_path, capsys)
    hits = run_json(capsys, "search", rows[3]["productDisplayName"], "-k", "50", "--home", str(home))
    assert f"rec:fashion:{gone_pid}" not in {h["record"] for h in hits["results"]}


def test_sync_refuses_to_empty_a_source(capsys: pytest.CaptureFixture[str], home: Path, catalog: Path) -> None:
    run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    fields, _ = read_rows(catalog)
    write_rows(catalog, fields, [])
    code = main(["ingest", str(catalog), "--home", str(home), "--quiet", "--sync"])
    assert code == 2 and "refusing" in capsys.readouterr().err
    assert len(snapshot(home)["vectors"]["images"]) == 16


def test_killed_update_converges(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, tmp_path: Path
) -> None:
    """kill -9 in the middle of replacing every record; the rerun reaches exactly a fresh ingest's state."""
    env = {**os.environ, "MMKG_HOME": str(home), "MMKG_INGEST_BATCH": "2"}
    cmd = [sys.executable, "-m", "mmkg.cli", "ingest", str(catalog), "--quiet", "--json"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    fields, rows = read_rows(catalog)
    for row in rows:
        row["productDisplayName"] = "Renamed " + row["productDisplayName"]
        row["baseColour"] = "Teal"
    write_rows(catalog, fields, rows)
    revision = home / "revision.json"
    start = json.loads(revision.read_text())["revision"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if json.loads(revision.read_text())["revision"] >= start + 2:  # two batches replaced, more to come
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["updated"] + report["ingested"] + report["already_present"] == 16
    assert snapshot(home) == fresh_snapshot(home, catalog, tmp_path, capsys)
