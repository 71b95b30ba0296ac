"""The evaluation protocol on real Flickr8k pairs: report shape, no leakage, agreement with brute force."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmkg.encoders.factory import create_encoder
from mmkg.evaluation.protocol import eval_workspace, evaluate, protocol_figures, split_pairs
from mmkg.graph.schema import Rel
from mmkg.ingest.detect import open_source
from mmkg.ingest.records import Record
from mmkg.settings import Settings

DEV = Path(os.environ.get("MMKG_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data") / "flickr8k" / "dev"


def test_report_has_the_protocol_figures(trained_home: Path) -> None:
    result = evaluate(DEV, Settings.load(home=trained_home), limit=20, progress=False)
    enc = result["encoder"]
    for direction in ("t2i", "i2t"):
        assert set(enc[direction]) >= {"R@1", "R@5", "R@10", "mAP", "ndcg@10"}
        assert 0 <= enc[direction]["R@1"] <= enc[direction]["R@5"] <= enc[direction]["R@10"] <= 100
    assert enc["rsum"] == round(sum(enc[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 2)
    assert result["meta"]["images"] == 20 and result["meta"]["captions"] == 100


def test_the_graph_never_links_a_test_caption_to_its_image(trained_home: Path) -> None:
    settings = Settings.load(home=trained_home)
    source = open_source(DEV, "flickr")
    records = [r for r, _ in zip((r for r in source.records() if isinstance(r, Record)), range(10), strict=False)]
    with eval_workspace(records, source.name, settings, create_encoder(settings), progress=False) as ev:
        assert list(ev.store.iter_edges(Rel.DESCRIBES)) == []
        for text_id in ev.text_ids:  # a caption's record holds that caption and nothing else
            record = ev.store.neighbors(text_id, [Rel.HAS], "in")
            assert len(record) == 1 and len(ev.store.neighbors(record[0][1].id, [Rel.HAS], "out")) == 1
        # The index-based similarity equals the brute-force product of the stored vectors.
        t = ev.vectors.texts.get(ev.text_ids)
        i = ev.vectors.images.get(ev.image_ids)
        from mmkg.evaluation.protocol import full_similarity

        np.testing.assert_allclose(full_similarity(ev.vectors.images, t, ev.image_ids), t @ i.T, atol=1e-5)


def test_split_pairs_keeps_caption_owners() -> None:
    recs = [Record("a", (Path("a.jpg"),), ()), Record("b", (Path("b.jpg"),), ())]
    from mmkg.ingest.records import TextField

    recs = [Record(r.id, r.images, (TextField("caption", r.id + "1"), TextField("caption", r.id + "2"))) for r in recs]
    images, captions, owner = split_pairs(recs)
    assert [r.id for r in images] == ["a#image", "b#image"] and owner == [0, 0, 1, 1]
    assert all(not r.images for r in captions)


def test_figures_from_a_perfect_ranking_are_100() -> None:
    owner = np.array([0, 0, 1, 1])
    t2i = np.eye(2)[owner]  # each caption scores its own image 1, the other 0
    figs = protocol_figures(t2i, t2i.T, owner)
    assert figs["t2i"]["R@1"] == figs["i2t"]["R@1"] == 100.0 and figs["mAP"] == 100.0


def test_a_catalog_folder_gets_the_catalog_protocol(trained_home: Path, fashion_subset, tmp_path: Path) -> None:
    """`mmkg eval` on a catalog: held-out products query the rest; relevance is the same articleType and
    baseColour; mAP and NDCG@10 per direction (encoder only: this workspace has no GNN)."""
    catalog = fashion_subset(tmp_path / "fashion", 80)
    result = evaluate(catalog, Settings.load(home=trained_home), progress=False)
    assert set(result) == {"encoder", "meta"}
    for direction in ("text->image", "image->image"):
        figures = result["encoder"][direction]
        assert set(figures) == {"mAP", "ndcg@10"} and all(0 < v <= 100 for v in figures.values())
    meta = result["meta"]
    assert meta["relevance"] == ["articleType", "baseColour"]
    assert 0 < meta["queries"] < meta["corpus"] and meta["corpus"] + meta["queries"] <= 80
