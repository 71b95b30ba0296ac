"""The CLI end to end on real data: ingest, idempotence, resume, bad input, search, stats, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmkg.cli import main

CYPHER = '"}) MATCH (n) DETACH DELETE n //'


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def flickr_subset(shared_data: Path, dest: Path, n: int) -> tuple[Path, list[dict]]:
    src = shared_data / "flickr8k" / "dev"
    (dest / "images").mkdir(parents=True)
    rows = [json.loads(line) for line in (src / "captions.jsonl").read_text().splitlines()[:n]]
    for row in rows:
        shutil.copy(src / row["image"], dest / row["image"])
    return dest, rows


def test_untrained_workspace_names_the_training_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "search", "a dog", "--home", str(tmp_path / "empty"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "mmkg train encoder" in err and "Traceback" not in err


def test_missing_collection_is_one_clear_line(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run_cli(capsys, "ingest", str(home / "no-such-folder"), "--home", str(home))
    assert code == 2 and err.startswith("mmkg: error:") and err.count("\n") == 1


def test_ingest_search_stats_and_idempotence(
    capsys: pytest.CaptureFixture[str], home: Path, fashion_subset: Any, shared_data: Path
) -> None:
    catalog = fashion_subset(home.parent / "fashion", 30)
    first = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert first["ingested"] == 30 and first["skipped"] == []
    stats = run_json(capsys, "stats", "--home", str(home))
    assert stats["nodes"]["Record"] == 30 and stats["nodes"]["Image"] == 30 and stats["nodes"]["Text"] == 30
    assert stats["edges"]["HAS"] == 60 and stats["edges"]["DESCRIBES"] == 30 and stats["edges"]["DEPICTS"] > 30

    again = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet")
    assert again["ingested"] == 0 and again["already_present"] == 30
    assert run_json(capsys, "stats", "--home", str(home)) == stats

    t2i = run_json(capsys, "search", "white sports shoes for men", "-k", "5", "--home", str(home))
    assert len(t2i["results"]) == 5
    for hit in t2i["results"]:
        assert hit["kind"] == "image" and Path(hit["path"]).is_file()
        assert set(hit) >= {"id", "score", "kind", "path", "attributes", "explanation"}
    scores = [h["score"] for h in t2i["results"]]
    assert scores == sorted(scores, reverse=True)
    # A word the catalog never states is named: the hits only come near it.
    assert run_json(capsys, "search", "perfume for men", "--home", str(home))["unmatched_words"] == ["perfume"]
    code, out, _ = run_cli(capsys, "search", "perfume for men", "-k", "2", "--home", str(home))
    assert code == 0 and out.startswith("No record contains 'perfume': the results match it only by meaning")
    # The query names attribute values the catalog holds, so some hit shares an entity with it and says so:
    # its explanation lists the signals that scored it first, then the paths that start at the query.
    explained = [h for h in t2i["results"] if h["explanation"]["shared_entities"]]
    assert explained and all(h["explanation"]["text"][0].startswith("signals:") for h in explained)
    assert all(any(line.startswith("query") for line in h["explanation"]["text"]) for h in explained)

    image = next(catalog.glob("images/*.jpg"))
    i2t = run_json(capsys, "search", "--image", str(image), "--target", "texts", "-k", "3", "--home", str(home))
    assert [h["kind"] for h in i2t["results"]] == ["text"] * 3 and all(h["text"] for h in i2t["results"])
    i2i = run_json(capsys, "search", "--image", str(image), "-k", "1", "--home", str(home))
    assert Path(i2i["results"][0]["path"]).name == image.name  # an indexed image finds itself first
    phone = home.parent / "phone.heic"  # the same photo as a phone camera saves it
    with Image.open(image) as img:
        img.save(phone, format="HEIF", quality=90)
    heic = run_json(capsys, "search", "--image", str(phone), "-k", "1", "--home", str(home))
    assert Path(heic["results"][0]["path"]).name == image.name
    assert i2i["unlike_collection"] is False and heic["unlike_collection"] is False
    # A street photo (a man with a backpack) is unlike every product shot: search says its hits are loose, and ranks
    # them by the photo's look and colours alone, not by what the attribute probe and graph expansion extrapolate.
    street = shared_data / "flickr8k" / "dev" / "images" / "262446581_06ef7d9445.jpg"
    loose = run_json(capsys, "search", "--image", str(street), "-k", "3", "--home", str(home))
    assert loose["unlike_collection"] is True and len(loose["results"]) == 3
    scored_by = lambda hit: {s for s, v in hit["explanation"]["signals"].items() if v}  # noqa: E731
    assert all(scored_by(h) <= {"image", "colour"} and not h["explanation"]["paths"] for h in loose["results"])
    assert any(scored_by(h) - {"image", "colour"} for h in i2i["results"])
    code, out, _ = run_cli(capsys, "search", "--image", str(street), "-k", "1", "--home", str(home))
    assert code == 0 and out.startswith("This photo is unlike every photo in the collection")


def test_bad_input_is_skipped_with_reasons_and_the_rest_ingested(
    capsys: pytest.CaptureFixture[str], home: Path, shared_data: Path
) -> None:
    folder, rows = flickr_subset(shared_data, home.parent / "flickr-bad", 4)
    good_jpeg = (folder / rows[0]["image"]).read_bytes()
    (folder / "images" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    (folder / "images" / "zero.jpg").write_bytes(b"")
    (folder / "images" / "bomb.png").write_bytes(png_declaring(60000, 60000))
    with Image.open(folder / rows[1]["image"]) as img:  # a new image: a byte-identical copy would be the same node
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "images" / "cypher.jpg")
    caps = ["a caption", "another caption"]
    lines = [json.dumps(r).encode() for r in rows]
    lines += [
        json.dumps({"image": f"images/{name}", "captions": caps}).encode()
        for name in ("truncated.jpg", "zero.jpg", "bomb.png")
    ]
    lines.append(json.dumps({"image": "../../../etc/passwd", "captions": caps}).encode())
    lines.append(json.dumps({"image": "images/missing.jpg", "captions": caps}).encode())
    lines.append(json.dumps({"image": "images/cypher.jpg", "captions": [CYPHER, "平静的湖面上的一只天鹅"]}).encode())
    lines.append(b'{"image": "images/x.jpg", "captions": ["caf\xe9 \xff\xfe"]}')
    lines.append(b"this is not json")
    (folder / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    report = run_json(capsys, "ingest", str(folder), "--home", str(home), "--quiet")
    reasons = {s["item"]: s["reason"] for s in report["skipped"]}
    text = json.dumps(report["skipped"])
    for bad in ("truncated.jpg", "zero.jpg", "bomb.png", "etc/passwd", "missing.jpg"):
        assert bad in text, f"{bad} not reported: {reasons}"
    assert any("line" in item or ":" in item for item in reasons)  # the undecodable and the non-JSON lines
    assert len(report["skipped"]) >= 7
    assert all(reason.strip() for reason in reasons.values())
    # The four good records and the Cypher one are in; nothing bad sank the batch.
    stats = run_json(capsys, "stats", "--home", str(home))
    assert stats["nodes"]["Image"] == 5
    hits = run_json(capsys, "search", CYPHER, "--target", "texts", "-k", "50", "--home", str(home))
    assert CYPHER in [h["text"] for h in hits["results"]]  # stored verbatim, changed nothing


def test_killed_ingest_resumes_without_duplicates(home: Path, fashion_subset: Any, tmp_path: Path) -> None:
    catalog = fashion_subset(tmp_path / "fashion", 60)
    env = {**os.environ, "MMKG_HOME": str(home), "MMKG_INGEST_BATCH": "10"}
    cmd = [sys.executable, "-m", "mmkg.cli", "ingest", str(catalog), "--quiet", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    index_manifest = home / "index" / "images"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(index_manifest.glob("*")) and any((home / "graph").glob("*")):
            time.sleep(1.0)  # at least one batch is committed; the next is in flight
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["ingested"] + report["already_present"] == 60

    fresh = tmp_path / "fresh-home"
    shutil.copytree(home / "models", fresh / "models")
    clean = subprocess.run(cmd, env={**env, "MMKG_HOME": str(fresh)}, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr

    def stats(h: Path) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "mmkg.cli", "stats", "--json"],
            env={**env, "MMKG_HOME": str(h)},
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    assert stats(home) == stats(fresh)


def test_train_encoder_takes_a_seed_and_members(tmp_path: Path, shared_data: Path) -> None:
    """`--seed` and `--members` reach the training and are saved beside the heads: members of seeds 3, 4, 5."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    lines = (shared_data / "flickr8k" / "train" / "captions.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    for line in lines:
        image = json.loads(line)["image"]
        shutil.copy(shared_data / "flickr8k" / "train" / image, data / image)
    (data / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    home = tmp_path / "ws"
    args = ["train", "encoder", "--data", str(data), "--home", str(home), "--seed", "3", "--members", "3", "--json"]
    assert main(args) == 0
    config = json.loads((home / "models" / "lit" / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["hyperparams"]["seed"] == 3
    assert config["arch"]["members"] == 3
    assert [m["seed"] for m in config["training"]["members"]] == [3, 4, 5]
