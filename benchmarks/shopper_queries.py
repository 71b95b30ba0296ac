"""Shopper-style queries on a workspace holding the fashion catalog: precision@10 from stated attributes.

    MMKG_HOME=<workspace with the fashion catalog ingested> .venv/bin/python benchmarks/shopper_queries.py

Each query names what a shopper wants (colour, type, gender); a hit is relevant when its product states all
of those attribute values. The queries were written by hand before any figure was seen, and are not used for
tuning. `QUERIES_ZH` asks for the same products in Chinese (the catalog is English), as a Chinese shopper
would write them, one with an English word left in (`kurta`); four of them (black belt, white sports shoes,
pink top, blue jeans) were tried by hand while the translation was built. Every system runs through the same
ranking engine, on the same workspace: `full` (the weights search uses), `full_untuned` (the defaults),
`encoder` (the image vector alone), `bm25` (lexical alone) and `dense_text` (the record's texts alone).
"""

from __future__ import annotations

import argparse

from mmkg.collection import Collection, open_collection
from mmkg.retrieval.ranker import RankingConfig
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.search import Query
from mmkg.settings import Settings

QUERIES: list[tuple[str, dict[str, str]]] = [
    ("white sports shoes for men", {"articleType": "Sports Shoes", "baseColour": "White", "gender": "Men"}),
    ("black leather belt", {"articleType": "Belts", "baseColour": "Black"}),
    ("blue jeans for men", {"articleType": "Jeans", "baseColour": "Blue", "gender": "Men"}),
    ("black handbag", {"articleType": "Handbags", "baseColour": "Black"}),
    ("navy blue t-shirt", {"articleType": "Tshirts", "baseColour": "Navy Blue"}),
    ("pink top for women", {"articleType": "Tops", "baseColour": "Pink", "gender": "Women"}),
    ("men's brown casual shoes", {"articleType": "Casual Shoes", "baseColour": "Brown", "gender": "Men"}),
    ("steel watch", {"articleType": "Watches", "baseColour": "Steel"}),
    ("black heels", {"articleType": "Heels", "baseColour": "Black"}),
    ("green kurta", {"articleType": "Kurtas", "baseColour": "Green"}),
    ("beige trousers", {"articleType": "Trousers", "baseColour": "Beige"}),
    ("white shirt for men", {"articleType": "Shirts", "baseColour": "White", "gender": "Men"}),
]

QUERIES_ZH: list[tuple[str, dict[str, str]]] = [
    ("男士白色运动鞋", QUERIES[0][1]),
    ("黑色皮带", QUERIES[1][1]),
    ("男士蓝色牛仔裤", QUERIES[2][1]),
    ("黑色手提包", QUERIES[3][1]),
    ("藏青色T恤", QUERIES[4][1]),
    ("女士粉色上衣", QUERIES[5][1]),
    ("男士棕色休闲鞋", QUERIES[6][1]),
    ("钢制手表", QUERIES[7][1]),
    ("黑色高跟鞋", QUERIES[8][1]),
    ("绿色 kurta", QUERIES[9][1]),
    ("米色裤子", QUERIES[10][1]),
    ("男士白衬衫", QUERIES[11][1]),
]


def precision_at_10(retriever: RecordRetriever, text: str, want: dict[str, str]) -> float:
    hits = retriever.search(Query(text=text), k=10)
    good = sum(all(f"{k}:{v}" in h.attributes for k, v in want.items()) for h in hits)
    return 100.0 * good / 10


def systems_on(settings: Settings, col: Collection) -> dict[str, RecordRetriever]:
    """The systems a workspace benchmark compares, on one record table: `full` (the weights search uses),
    `full_untuned` (the defaults), and one signal alone: `encoder` (image), `bm25`, `dense_text`."""
    full = RecordRetriever(settings, col.store, col.vectors, col.encoder)
    base = full.ranker.config
    systems = {
        "full": full,
        "full_untuned": RecordRetriever(settings, col.store, col.vectors, col.encoder, config=RankingConfig(),
                                        table=full.table),
    }
    for name, signal in (("encoder", "image"), ("bm25", "lexical"), ("dense_text", "text")):
        only = RankingConfig(base.text.only(signal), base.image.only(signal), f"{signal} alone")
        systems[name] = RecordRetriever(settings, col.store, col.vectors, col.encoder, config=only, table=full.table)
    return systems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print the top 3 of each query under full")
    args = parser.parse_args()
    settings = Settings.load()
    with open_collection(settings, read_only=True) as col:
        systems = systems_on(settings, col)
        full = systems["full"]
        print(f"weights: {full.ranker.config.tuned_on}")
        for queries in (QUERIES, QUERIES_ZH):
            print(f"{'query':32s}" + "".join(f"{s:>14s}" for s in systems))
            totals = dict.fromkeys(systems, 0.0)
            for text, want in queries:
                row = {s: precision_at_10(r, text, want) for s, r in systems.items()}
                for s, v in row.items():
                    totals[s] += v
                print(f"{text:32s}" + "".join(f"{row[s]:14.0f}" for s in systems))
                if args.show:
                    for h in full.search(Query(text=text), k=3):
                        print(f"    {h.title}  [{', '.join(a for a in h.attributes if a.split(':')[0] in want)}]")
            print(f"{'mean precision@10':32s}" + "".join(f"{totals[s] / len(queries):14.1f}" for s in systems))

if __name__ == "__main__":
    main()
