"""How often a zero-shot image tag is true, by its score: the calibration of `tag_min_score`.

    MMKG_HOME=<workspace with the fashion catalog ingested> .venv/bin/python benchmarks/tag_precision.py

A tag (a DEPICTS edge with source `tag`) is counted true when every word of its entity's name occurs in
its product's own name or stated attribute values (stemmed): the catalog's own words are the ground truth.
Prints the precision and the number of tags kept at each threshold, and the lowest threshold whose
precision reaches the target (default 0.5): below it, a tag is more often wrong than right.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from mmkg.graph.factory import open_store
from mmkg.graph.schema import Label, Rel
from mmkg.retrieval.lexical import tokenize
from mmkg.settings import Settings

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.5)
    args = parser.parse_args()
    settings = Settings.load()
    with open_store(settings, read_only=True) as store:
        words: dict[str, set[str]] = {}
        for node in store.iter_nodes(Label.RECORD):
            texts = [str(n.props.get("text", "")) for _, n in store.neighbors(node.id, [Rel.HAS], "out")]
            values = [a.split(":", 1)[-1] for a in node.props.get("attributes") or []]
            words[node.id] = set(tokenize(" ".join(texts + values)))
        image_words: dict[str, set[str]] = defaultdict(set)
        for edge in store.iter_edges(Rel.HAS):
            if edge.dst.startswith("img:"):
                image_words[edge.dst] |= words.get(edge.src, set())
        names = {n.id: str(n.props.get("name", n.id)) for n in store.iter_nodes(Label.ENTITY)}
        tags = [(float(e.props.get("score", 0.0)), set(tokenize(names.get(e.dst, ""))) <= image_words[e.src])
                for e in store.iter_edges(Rel.DEPICTS) if e.props.get("source") == "tag"]
    if not tags:
        print("no predicted tags in this workspace")
        return
    print(f"{len(tags)} tags on {len(image_words)} images; a tag is true when its words are the product's own")
    print(f"{'threshold':>10s}{'kept':>8s}{'precision':>11s}")
    chosen = None
    for t in THRESHOLDS:
        kept = [ok for s, ok in tags if s >= t]
        precision = sum(kept) / len(kept) if kept else float("nan")
        print(f"{t:10.2f}{len(kept):8d}{precision:11.3f}")
        if chosen is None and kept and precision >= args.target:
            chosen = t
    print(f"lowest threshold with precision >= {args.target}: {chosen if chosen is not None else 'none'}")


if __name__ == "__main__":
    main()
