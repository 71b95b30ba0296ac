"""Candidate untuned weights scored on the dev queries of a benchmark: how `DEFAULT_TEXT` / `DEFAULT_IMAGE` were chosen.

    MMKG_HOME=<trained workspace> .venv/bin/python benchmarks/default_weights.py OUT.jsonl \
        eval --data ../shared/data/fashion --quiet --json

Runs the real `mmkg eval` (arguments after OUT.jsonl). Each time the benchmark tunes `full` on a direction's
dev queries, every candidate below (a change to that query kind's defaults) is first scored on those same
dev queries with the tuner's metric, and one JSON line per direction is appended to OUT.jsonl. Only dev
queries are scored, so choosing defaults from these lines never looks at a test query. Run it on each
collection (fashion, medpix2, flickr8k/dev with --knowledge) and compare the candidates across them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from mmkg.cli import main
from mmkg.evaluation import systems
from mmkg.retrieval.ranker import DEFAULT_IMAGE, DEFAULT_TEXT, RankWeights

CANDIDATES: dict[str, dict[str, float]] = {  # changes to the current defaults: gnn and graph_image, then hub
    "defaults": {},
    "gnn 0": {"gnn": 0.0},
    "graph_image 0": {"graph_image": 0.0},
    "gnn 0, graph_image 0": {"gnn": 0.0, "graph_image": 0.0},
    "gnn 0.5": {"gnn": 0.5},
    "graph_image 0.5": {"graph_image": 0.5},
    "gnn 0.5, graph_image 0.5": {"gnn": 0.5, "graph_image": 0.5},
    "hub 0": {"hub": 0.0},
    "hub 0.25": {"hub": 0.25},
    "hub 0.5": {"hub": 0.5},
    "hub 0.75": {"hub": 0.75},
    "hub 1": {"hub": 1.0},
    "hub 0.5, k 16": {"hub": 0.5, "hub_k": 16},
    "hub 0.5, k 256": {"hub": 0.5, "hub_k": 256},
    "hub 0.75, k 256": {"hub": 0.75, "hub_k": 256},
    "hub 1, k 256": {"hub": 1.0, "hub_k": 256},
    "contradicted_graph 0": {"contradicted_graph": 0.0},
    "contradicted_graph 0.5": {"contradicted_graph": 0.5},
    "contradicted_graph 1": {"contradicted_graph": 1.0},
}


def scoring_candidates(out_path: str) -> Any:
    tune = systems.Tuner.tune

    def tune_and_score(self: systems.Tuner, start: RankWeights, *args: Any, **kwargs: Any) -> Any:
        base = DEFAULT_TEXT if self.queries.kind == "text" else DEFAULT_IMAGE
        row: dict[str, Any] = {"kind": self.queries.kind, "dev_queries": len(self.queries)}
        row |= {name: round(self.score(replace(base, **change)), 3) for name, change in CANDIDATES.items()}
        with open(out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        return tune(self, start, *args, **kwargs)

    return tune_and_score


if __name__ == "__main__":
    systems.Tuner.tune = scoring_candidates(sys.argv[1])  # type: ignore[method-assign]
    sys.exit(main(sys.argv[2:]))
