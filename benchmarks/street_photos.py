"""Street photos asked of a catalog: is a product of the kind the photo shows among the first ten?

    MMKG_HOME=<workspace with ../shared/data/fashion ingested> .venv/bin/python benchmarks/street_photos.py

A shopper's photo is often not a product shot: someone in the street wearing the jacket they want. The queries are
the flickr8k/dev photos whose captions name a garment or accessory the fashion catalog sells, in at least two of
their five captions (`KINDS`: `backpack` asks for Backpacks, `hat` for Caps or Hats...). A photo shows more than
it names (the man with the backpack wears a shirt too), so a hit of the named kind is a lower bound on what a
person would accept. For each system (`full`, the weights search uses; `encoder`, the image vector alone): the share
of photos with a product of the named kind in the first ten, precision@10 for that kind, and how often search says
the photo is unlike every photo in the collection (`unlike_collection`). Random precision is the named kinds' share
of the catalog.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

from PIL import Image
from shopper_queries import systems_on

from mmkg.collection import open_collection
from mmkg.retrieval.search import Query
from mmkg.settings import Settings

KINDS = {"backpack": {"Backpacks"}, "handbag": {"Handbags"}, "purse": {"Handbags", "Clutches"},
         "sunglasses": {"Sunglasses"}, "jeans": {"Jeans"}, "shorts": {"Shorts"}, "dress": {"Dresses"},
         "skirt": {"Skirts"}, "jacket": {"Jackets"}, "sweatshirt": {"Sweatshirts"}, "hat": {"Caps", "Hats"},
         "cap": {"Caps"}, "tie": {"Ties"}, "sandals": {"Sandals", "Sports Sandals"},
         "boots": {"Casual Shoes", "Formal Shoes"}, "sneakers": {"Sports Shoes", "Casual Shoes"},
         "t-shirt": {"Tshirts"}, "shirt": {"Shirts", "Tshirts"}}
SYSTEMS = ("full", "encoder")


def street_queries(folder: Path) -> list[tuple[Path, str, set[str]]]:
    """(photo, the word its captions use, the article types that answer it)."""
    out = []
    for line in (folder / "captions.jsonl").read_text().splitlines():
        row = json.loads(line)
        said = " ".join(row["captions"]).casefold()
        out += [(folder / row["image"], word, kinds) for word, kinds in KINDS.items()
                if len(re.findall(rf"\b{re.escape(word)}\b", said)) >= 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/flickr8k/dev"))
    args = parser.parse_args()
    queries = street_queries(args.photos)
    settings = Settings.load()
    with open_collection(settings, read_only=True) as col:
        systems = {name: r for name, r in systems_on(settings, col).items() if name in SYSTEMS}
        t = systems["full"].table
        kind_of = {t.ids[row]: next((a.split(":", 1)[1] for a in t.attributes[row] if a.startswith("articleType:")),
                                    "") for row in range(len(t))}
        print(f"{len(queries)} photos: {dict(collections.Counter(w for _, w, _ in queries).most_common())}")
        hit, precision, unlike = collections.Counter(), collections.Counter(), collections.Counter()
        for path, _, kinds in queries:
            query = Query(image=Image.open(path).convert("RGB"))
            for name, retriever in systems.items():
                found = [kind_of.get(h.record, "") in kinds for h in retriever.search(query, k=10)]
                hit[name] += any(found)
                precision[name] += sum(found) / 10
                unlike[name] += retriever.unlike_collection(query)
        share = collections.Counter(kind_of.values())
        chance = sum(sum(share[k] for k in kinds) / len(t) for _, _, kinds in queries) / len(queries)
        print(f"{'system':10s}{'hit@10 %':>10s}{'P@10 %':>10s}{'told unlike %':>15s}")
        for name in systems:
            print(f"{name:10s}{100 * hit[name] / len(queries):10.1f}{100 * precision[name] / len(queries):10.1f}"
                  f"{100 * unlike[name] / len(queries):15.1f}")
        print(f"random P@10: {100 * chance:.1f} % (the named kinds' share of the catalog)")


if __name__ == "__main__":
    main()
