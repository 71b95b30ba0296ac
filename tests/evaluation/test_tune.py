"""`mmkg tune`: weights tuned on the served collection are saved in the workspace and used by search."""

from __future__ import annotations

from pathlib import Path

from mmkg.collection import open_collection
from mmkg.evaluation.tune import tune_workspace
from mmkg.ingest.detect import open_source
from mmkg.ingest.pipeline import Ingestor
from mmkg.retrieval.ranker import RankingConfig
from mmkg.retrieval.record_search import open_retriever, ranking_path
from mmkg.settings import Settings


def test_self_tuning_saves_weights_that_search_uses(home: Path, fashion_subset, tmp_path: Path) -> None:
    settings = Settings.load(home=home)
    source = open_source(fashion_subset(tmp_path / "fashion", 60))
    with open_collection(settings) as col:
        Ingestor(settings, col.store, col.vectors, col.encoder).run(source.records(), source.name, progress=False)
    assert not ranking_path(settings).exists()
    config = tune_workspace(settings)
    saved = RankingConfig.load(ranking_path(settings))
    assert saved == config and "known-item" in saved.tuned_on and "pseudo_query_mAP" in saved.figures
    assert saved.image == RankingConfig().image  # image weights are not tuned without labels
    with open_collection(settings, read_only=True) as col:
        retriever = open_retriever(settings, col.store, col.vectors, col.encoder)
        assert retriever.ranker.config == saved
