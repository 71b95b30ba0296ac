"""How often search tells a photo it is unlike the collection, at the floor it uses and at others one could.

    MMKG_HOME=<workspace> .venv/bin/python benchmarks/unlike_floor.py FOLDER[:N] ...

`RecordRanker.image_floor` is the 1st percentile of the collection's own images' likeness to their nearest other
record (`UNLIKE_PERCENTILE`). This prints that distribution, a few other floors drawn from it (a lower percentile,
Tukey's fence below the quartiles, the 1st percentile less half its gap to the median), and for each FOLDER the
share of N of its photos (a fixed random choice, 300 unless given) that each floor calls unlike. Asking photos of
the collection's own kind and photos of other kinds shows what a floor gets right and what it misses.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from mmkg.collection import open_collection
from mmkg.ingest.images import decode_image
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.settings import Settings

PERCENTILES = (0, 0.1, 1, 5, 25, 50, 75)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def floors(own: np.ndarray) -> dict[str, float]:
    p = dict(zip(PERCENTILES, np.percentile(own, PERCENTILES).tolist(), strict=True))
    return {"p1 (search)": p[1], "p0.1": p[0.1], "p1 - (p50-p1)/2": p[1] - (p[50] - p[1]) / 2,
            "tukey p25 - 1.5 IQR": p[25] - 1.5 * (p[75] - p[25])}


def photos(spec: str) -> list[Path]:
    folder, _, n = spec.partition(":")
    files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in PHOTO_SUFFIXES)
    random.Random(0).shuffle(files)
    return files[: int(n or 300)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="FOLDER[:N]: N photos found under FOLDER (300 unless given)")
    args = parser.parse_args()
    settings = Settings.load()
    with open_collection(settings, read_only=True) as col:
        ranker = RecordRetriever(settings, col.store, col.vectors, col.encoder).ranker
        own = ranker.own_likeness()
        print(f"{len(own)} of the collection's images, likeness to their nearest other record, percentiles: "
              + ", ".join(f"p{p:g} {v:.3f}" for p, v in zip(PERCENTILES, np.percentile(own, PERCENTILES), strict=True)))
        cut = floors(own)
        print(f"{'photos':44s}{'n':>5s}{'p50':>7s}" + "".join(f"{name:>22s}" for name in cut))
        print(f"{'(floor)':56s}" + "".join(f"{v:22.3f}" for v in cut.values()))
        print(f"{'the collection own images':56s}" + "".join(f"{100 * (own < v).mean():21.1f}%" for v in cut.values()))
        for spec in args.folders:
            files = photos(spec)
            vecs = col.encoder.encode_images([decode_image(f.read_bytes(), settings.max_image_pixels) for f in files])
            best = ranker.image_likeness(vecs)
            print(f"{spec[-44:]:44s}{len(files):5d}{np.median(best):7.3f}"
                  + "".join(f"{100 * (best < v).mean():21.1f}%" for v in cut.values()))


if __name__ == "__main__":
    main()
