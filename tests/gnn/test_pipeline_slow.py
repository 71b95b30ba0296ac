"""End to end on real data: lit heads (a smoke model), `train_gnn` on 30 Flickr8k train images, a workspace
of 30 dev images ingested by the real pipeline, then graph search, explanations and the eval modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmkg.settings import Settings

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    if not (SHARED / "flickr8k").is_dir():
        pytest.skip(f"shared data missing: {SHARED}")
    from mmkg.encoders.factory import create_encoder
    from mmkg.encoders.lit_train import train_lit
    from mmkg.gnn.train import train_gnn

    home = tmp_path_factory.mktemp("gnn-home")
    settings = Settings.load(home=home)
    train_lit(SHARED / "flickr8k" / "train", settings, max_images=48, epochs=2, holdout=8, hflip=False, progress=False)
    summary = train_gnn(SHARED / "flickr8k" / "train", settings, create_encoder(settings), progress=False,
                        max_images=30, epochs=2, batch_size=8, hidden=64, tune_fraction=0.3)
    assert summary["fit_images"] == 21 and summary["tune_images"] == 9
    assert (home / "models" / "gnn" / "model.pt").is_file()
    assert {"text.w_graph", "image.w_graph"} <= set(summary["fusion"]["weights"])
    return settings


def test_graph_search_explain_and_eval_modes_on_real_pipeline(trained: Settings, tmp_path: Path):
    from mmkg.encoders.factory import create_encoder
    from mmkg.evaluation.graph_modes import graph_mode_figures
    from mmkg.gnn.pairs import ingest_pairs, read_pairs
    from mmkg.gnn.refine import load_gnn
    from mmkg.retrieval.explain import check_path
    from mmkg.retrieval.graph_retriever import GraphRetriever
    from mmkg.retrieval.search import Query

    encoder = create_encoder(trained)
    gnn = load_gnn(trained, encoder)
    assert gnn is not None
    name, records = read_pairs(SHARED / "flickr8k" / "dev")
    pg = ingest_pairs(records[:30], name, tmp_path / "dev", trained, encoder, progress=False)
    try:
        ws = pg.settings
        for mode in ("encoder", "gnn", "full"):
            r = GraphRetriever(ws, pg.store, pg.vectors, encoder, gnn, mode=mode)  # type: ignore[arg-type]
            hits = r.search(Query(text="a dog runs on the grass"), k=5)
            assert len(hits) == 5 and all(h.kind == "image" for h in hits)
            for h in hits:
                assert all(check_path(pg.store, p) for p in h.explanation.paths)
            texts = r.search(Query(text="a child playing"), k=3, target="texts")
            assert len(texts) == 3 and all(h.kind == "text" for h in texts)
        exp = r.explain(Query(text="a dog runs on the grass"), pg.image_ids[0])
        assert exp.paths and all(check_path(pg.store, p) for p in exp.paths)
        figs = graph_mode_figures(gnn, pg.store, pg.vectors, pg.image_ids, pg.text_ids, pg.owner)
        for mode in ("gnn", "full"):
            assert set(figs[mode]["t2i"]) >= {"R@1", "R@5", "R@10"} and 0 <= figs[mode]["rsum"] <= 600
        assert np.isfinite(figs["full"]["mAP"])
    finally:
        pg.close()
