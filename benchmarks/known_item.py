"""Known-item search: a photo of something in the collection, asked as a query, should find that record first.

    MMKG_HOME=<workspace with a catalog ingested> .venv/bin/python benchmarks/known_item.py [--n 300]

The category benchmarks (`mmkg eval`) hold their query products out of the gallery, so they never ask for a record
that is in it; a shopper with a product's photo does. Every `len // n`-th record with an image is asked three times, by
search itself (`RecordRetriever.search`, first ten hits): its stored photo, a degraded copy (resized to 2/3,
saved as JPEG at quality 60: a screenshot or a forwarded picture), and the photo as a phone camera saves a portrait
shot (the pixels turned a quarter, an EXIF orientation that shows them upright, JPEG at quality 85), read as an
upload or `mmkg search --image` reads it. A hit counts when it is the record or shows
the same image (identical pictures are shown once, under one of their records). Systems, on the same workspace:
`full` (the weights search uses), `full_untuned` (the defaults) and `encoder` (the image vector alone).
"""

from __future__ import annotations

import argparse
import io

from PIL import Image
from shopper_queries import systems_on

from mmkg.collection import open_collection
from mmkg.ingest.images import decode_image
from mmkg.retrieval.search import Query
from mmkg.settings import Settings

SYSTEMS = ("full", "full_untuned", "encoder")
ORIENTATION = 0x0112


def degraded(image: Image.Image) -> Image.Image:
    small = image.resize((max(1, image.width * 2 // 3), max(1, image.height * 2 // 3)))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=60)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def phone(image: Image.Image, max_pixels: int) -> Image.Image:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # turn 90 degrees clockwise to show
    buf = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=85, exif=exif)
    return decode_image(buf.getvalue(), max_pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="records asked for")
    args = parser.parse_args()
    settings = Settings.load()
    with open_collection(settings, read_only=True) as col:
        systems = {name: r for name, r in systems_on(settings, col).items() if name in SYSTEMS}
        t = systems["full"].table
        rows = [int(r) for r in t.has_image.nonzero()[0]]
        rows = rows[:: max(1, len(rows) // args.n)][: args.n]
        print(f"weights: {systems['full'].ranker.config.tuned_on}; {len(rows)} records of {len(t)}")
        print(f"{'photo':10s}{'system':>14s}{'first %':>10s}{'top 5 %':>10s}{'top 10 %':>10s}")
        variants = {"stored": lambda im: im, "degraded": degraded,
                    "phone": lambda im: phone(im, settings.max_image_pixels)}
        for variant, make in variants.items():
            ranks: dict[str, list[int]] = {name: [] for name in systems}
            for row in rows:
                own = {t.image_ids[j] for j in t.images_of(row)}
                image = Image.open(t.image_paths[t.images_of(row)[0]]).convert("RGB")
                query = Query(image=make(image))
                for name, retriever in systems.items():
                    hits = retriever.search(query, k=10)
                    found = [i for i, h in enumerate(hits) if h.record == t.ids[row] or h.id in own]
                    ranks[name].append(found[0] if found else 10)
            for name, got in ranks.items():
                share = [100.0 * sum(r < k for r in got) / len(got) for k in (1, 5, 10)]
                print(f"{variant:10s}{name:>14s}" + "".join(f"{s:10.1f}" for s in share))


if __name__ == "__main__":
    main()
