"""`mmkg eval` on real collections: the honest image-caption protocol, the catalog and MedPix benchmarks,
every system in one run, per-query output, the table and the plot."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mmkg.encoders.factory import create_encoder
from mmkg.evaluation import report
from mmkg.evaluation.flickr import PairGalleries, read_pairs, split_pairs
from mmkg.evaluation.gallery import Gallery, image_queries
from mmkg.evaluation.protocol import evaluate
from mmkg.evaluation.systems import GRID, Tuner, tune_full, tune_gnn, tune_without_graph
from mmkg.graph.schema import Label, Rel
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.records import Record, TextField
from mmkg.retrieval.ranker import DEFAULT_IMAGE, GRAPH_SIGNALS, RankWeights
from mmkg.settings import Settings

DATA = Path(os.environ.get("MMKG_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
DEV = DATA / "flickr8k" / "dev"


def test_image_caption_report_has_every_system(trained_home: Path, tmp_path: Path) -> None:
    per_query = tmp_path / "pq.jsonl"
    result = evaluate(DEV, Settings.load(home=trained_home), limit=12, progress=False, per_query=per_query)
    for system in ("encoder", "full", "full_untuned"):
        figs = result[system]
        for direction in ("t2i", "i2t"):
            assert set(figs[direction]) >= {"R@1", "R@5", "R@10", "mAP", "ndcg@10"}
            assert 0 <= figs[direction]["R@1"] <= figs[direction]["R@5"] <= figs[direction]["R@10"] <= 100
        assert figs["rsum"] == round(sum(figs[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 2)
    assert result["meta"]["images"] == 12 and result["meta"]["captions"] == 60
    rows = [json.loads(line) for line in per_query.read_text(encoding="utf-8").splitlines()]
    assert {r["system"] for r in rows} >= {"encoder", "full"} and {r["direction"] for r in rows} == {"t2i", "i2t"}
    t2i = [r for r in rows if r["direction"] == "t2i" and r["system"] == "encoder"]
    assert t2i and all(len(r["top"]) == 5 and r["rank"] >= 0 and isinstance(r["query"], str) for r in t2i)
    assert all(r["query"].startswith("images/") for r in rows if r["direction"] == "i2t")
    for system in ("encoder", "full"):  # each query's average precision: the system's mAP, query by query
        for direction in ("t2i", "i2t"):
            ap = [r["ap"] for r in rows if r["system"] == system and r["direction"] == direction]
            assert all(0 <= a <= 1 for a in ap)
            assert 100 * sum(ap) / len(ap) == pytest.approx(result[system][direction]["mAP"], abs=0.01)


def test_a_coco_folder_gets_the_image_caption_protocol(trained_home: Path, tmp_path: Path) -> None:
    """`mmkg eval --data` on a COCO folder (annotations/captions_*.json) reads its image-caption pairs from every
    split and scores both directions, as for a Flickr-layout folder."""
    pairs, _ = read_pairs(DATA / "coco-mini")
    assert len(pairs) == 159 and all(r.images and len(r.texts) >= 5 for r in pairs)
    result = evaluate(DATA / "coco-mini", Settings.load(home=trained_home), limit=10, progress=False)
    assert result["meta"]["images"] == 10 and result["meta"]["captions"] >= 50
    assert {"t2i", "i2t"} <= set(result["full"]) and result["full"]["t2i"]["R@10"] == 100.0  # 10 images in all


def test_other_queries_never_change_a_query_s_scores(trained_home: Path, tmp_path: Path) -> None:
    """With the gallery fixed (the same test images), keeping only the first caption of each image leaves the
    first captions' results identical in every system: no query is scored with help from the others."""
    settings = Settings.load(home=trained_home)
    one = tmp_path / "one"
    (one / "images").mkdir(parents=True)
    lines = (DEV / "captions.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    with (one / "captions.jsonl").open("w", encoding="utf-8") as fh:
        for line in lines:
            obj = json.loads(line)
            shutil.copy(DEV / obj["image"], one / obj["image"])
            fh.write(json.dumps({"image": obj["image"], "captions": obj["captions"][:1]}) + "\n")
    runs = {}
    for name, folder in (("all", DEV), ("one", one)):
        evaluate(folder, settings, limit=10, progress=False, per_query=tmp_path / f"{name}.jsonl")
        rows = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        runs[name] = {(r["system"], r["query"]): (r["rank"], [t.split(":", 2)[2] for t in r["top"]])
                      for r in rows if r["direction"] == "t2i"}  # ids without the folder's name
    first = {json.loads(line)["captions"][0].strip() for line in lines}
    checked = 0
    for key, value in runs["one"].items():
        assert key[1] in first
        assert runs["all"][key] == value, key
        checked += 1
    assert checked >= 10 * 3


def test_the_graphs_hold_no_test_pair(trained_home: Path, tmp_path: Path) -> None:
    """Text->image: test images without test captions; image->text: test captions without test images."""
    settings = Settings.load(home=trained_home)
    records, source = read_pairs(DEV, limit=6)
    g = PairGalleries.build(records, source, [], "", settings, create_encoder(settings), tmp_path, False)
    try:
        assert list(g.t2i.store.iter_nodes(Label.TEXT)) == [] and len(list(g.t2i.store.iter_nodes(Label.IMAGE))) == 6
        assert list(g.i2t.store.iter_nodes(Label.IMAGE)) == [] and len(list(g.i2t.store.iter_nodes(Label.TEXT))) == 30
        assert list(g.t2i.store.iter_edges(Rel.DESCRIBES)) == list(g.i2t.store.iter_edges(Rel.DESCRIBES)) == []
    finally:
        g.close()


def test_split_pairs_keeps_caption_owners() -> None:
    recs = [Record(n, (Path(f"{n}.jpg"),), (TextField("caption", n + "1"), TextField("caption", n + "2")))
            for n in ("a", "b")]
    images, captions, owner = split_pairs(recs)
    assert [r.id for r in images] == ["a#image", "b#image"] and owner == [0, 0, 1, 1]
    assert all(not r.images for r in captions)


def test_a_catalog_gets_every_baseline_and_both_levels(trained_home: Path, fashion_subset, tmp_path: Path) -> None:
    catalog = fashion_subset(tmp_path / "fashion", 80)
    result = evaluate(catalog, Settings.load(home=trained_home), progress=False)
    assert {"encoder", "bm25", "dense_text", "hybrid", "full", "full_untuned", "full_without_graph"} <= set(result)
    for direction in ("text->image", "image->image", "text->image@type+colour+gender"):
        figures = result["full"][direction]
        assert set(figures) >= {"mAP", "ndcg@10"} and all(0 <= v <= 100 for v in figures.values())
    assert "text->image" in result["bm25"] and "image->image" not in result["bm25"]  # no words in a photo
    meta = result["meta"]
    assert "articleType" in meta["relevance"]["main"] and "gender" in meta["relevance"]["strict"]
    assert set(result["tuned"]) == {"text->image", "image->image"}
    assert set(result["tuned"]["image->image"]["gnn_propagation"]) == {"gnn_alpha", "gnn_hops"}
    text = report.table(result)
    assert "bm25" in text and "text->image" in text
    report.plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 5000


def _photo_tuner(fashion_subset, catalog_gallery, tmp_path: Path) -> tuple[Gallery, Tuner]:  # type: ignore[no-untyped-def]
    """A gallery of a catalog's first 45 products, and a tuner over the photos of the next 15 whose type it has
    (relevant: the same articleType)."""
    folder = fashion_subset(tmp_path / "fashion", 60)
    gallery, encoder, settings, records = catalog_gallery(folder, tmp_path / "ws", 45)
    kinds = [dict(r.attributes)["articleType"] for r in records]
    asked = [q for q in range(45, 60) if kinds[q] in kinds[:45]]
    queries = image_queries(gallery, encoder, [records[q].images[0] for q in asked], settings)
    columns = gallery.columns(CatalogSource.open(folder).name, [r.id for r in records[:45]])
    relevant = np.array([[kinds[q] == kinds[g] for g in range(45)] for q in asked])
    return gallery, Tuner(gallery.ranker, queries, columns, relevant)


def test_the_refined_vectors_are_scored_at_the_propagation_best_for_them(fashion_subset, catalog_gallery,
                                                                        tmp_path: Path) -> None:
    """`gnn` alone is measured at its own best dev settings, not at whatever `full` chose for its fusion."""
    gallery, tuner = _photo_tuner(fashion_subset, catalog_gallery, tmp_path)
    try:
        start = RankWeights(gnn=0.25, gnn_alpha=0.8, gnn_hops=3)
        chosen = tune_gnn(tuner, start)
        assert chosen == replace(chosen, gnn=1.0).only("gnn")
        best = tuner.score(chosen)
        for alpha, hops in itertools.product(GRID["gnn_alpha"], GRID["gnn_hops"]):
            assert tuner.score(replace(chosen, gnn_alpha=alpha, gnn_hops=hops)) <= best + 1e-6
    finally:
        gallery.close()


def test_full_climbs_from_two_starts_and_keeps_the_better(fashion_subset, catalog_gallery, tmp_path: Path) -> None:
    """Coordinate ascent from one start can end on a worse path than from another: `full` climbs from the given
    weights and from the best weights without the graph, and keeps whichever scores higher on the dev queries;
    the weights without the graph climb from the given weights and from `full`'s, each with the graph off."""
    gallery, tuner = _photo_tuner(fashion_subset, catalog_gallery, tmp_path)
    try:
        start = replace(DEFAULT_IMAGE, attribute=0.0)
        weights, score, plain = tune_full(tuner, start)
        first_plain = tune_without_graph(tuner, start)[0]
        with_graph = replace(first_plain, **{s: getattr(start, s) for s in ("gnn", *GRAPH_SIGNALS)})
        climbs = [tuner.tune(s) for s in (start, with_graph)]
        assert score == max(s for _, s in climbs) == pytest.approx(tuner.score(weights))
        assert weights in [w for w, s in climbs if s == score]
        plains = [tune_without_graph(tuner, s) for s in (start, weights)]  # the same two starts, graph off
        assert not plain.uses_graph() and plain.gnn == 0
        assert tuner.score(plain) == pytest.approx(max(s for _, s in plains))
    finally:
        gallery.close()


def test_tuning_keeps_a_photo_querys_own_look(fashion_subset, catalog_gallery, tmp_path: Path) -> None:
    """Tuned for mAP alone, a photo query dropped its own similarity and ranked by the attribute values predicted
    for it; its `image` weight now stays as given while every other weight tunes. So does `closest`, which dev
    photos held out of the gallery cannot measure (a photo of a record in the gallery finding that record)."""
    gallery, tuner = _photo_tuner(fashion_subset, catalog_gallery, tmp_path)
    try:
        for look, closest in ((1.0, 0.5), (0.5, 2.0)):
            start = replace(DEFAULT_IMAGE, image=look, attribute=0.0, closest=closest)
            chosen, _ = tuner.tune(start)
            assert (chosen.image, chosen.closest) == (look, closest)
            assert chosen != start  # the rest did tune: the predicted type is worth more than nothing here
    finally:
        gallery.close()


def test_medpix_benchmark_splits_by_case(trained_home: Path, tmp_path: Path) -> None:
    """Gallery: train cases; queries: images and captions of dev and test cases, never in the graph."""
    src = DATA / "medpix2"
    if not src.is_dir():
        pytest.skip("no MedPix data")
    result = evaluate(src, Settings.load(home=trained_home), limit=60, progress=False)
    meta = result["meta"]
    assert meta["protocol"] == "medpix" and meta["gallery"] > 0
    for system in ("encoder", "full"):
        assert "image->case" in result[system] and "text->case@region+modality" in result[system]
    assert "text->case" in result["bm25"]
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_plot_draws_image_caption_figures(tmp_path: Path) -> None:
    figs = {"t2i": {"R@1": 10.0, "mAP": 20.0}, "i2t": {"R@1": 12.0, "mAP": 22.0}}
    report.plot({"encoder": figs, "full": figs, "meta": {"data": "x"}}, tmp_path / "p.png")
    assert (tmp_path / "p.png").is_file()
    assert np.isfinite((tmp_path / "p.png").stat().st_size)
