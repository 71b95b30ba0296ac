"""The MedPix benchmark: image->case and text->case lookup, split by case as MedPix 2.0 publishes it.

The gallery is the cases of the `train` split (a record each: images, texts, attributes). The queries are
the images of the `dev` and `test` cases (image->case) and their captions (text->case); their cases are
never in the graph. `dev` queries tune `full`, `test` queries give every figure. A gallery case is
relevant when it has the query case's ACR code (the topic's code: same disease class), and at the coarse
level when it lies in the same body region (Location Category) and holds an image of the query's modality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.evaluation.benchmark import BenchmarkResult, Direction, run_directions
from mmkg.evaluation.gallery import Gallery, image_queries, text_queries
from mmkg.ingest.medpix import DESCRIPTIONS, MedpixSource, image_modality
from mmkg.ingest.records import Record
from mmkg.settings import Settings

SPLITS = "splitted_dataset/uid_list.json"


def medpix_benchmark(data_dir: Path, settings: Settings, encoder: Encoder, home: Path, limit: int | None = None,
                     progress: bool = False) -> tuple[dict[str, Any], BenchmarkResult]:
    split_file = Path(data_dir) / SPLITS
    if not split_file.is_file():
        raise UserInputError(f"{split_file} is missing: the MedPix benchmark needs the published case split")
    split: dict[str, list[str]] = json.loads(split_file.read_text(encoding="utf-8"))
    role = {uid: name for name in ("train", "dev", "test") for uid in split.get(name, [])}
    source = MedpixSource.open(Path(data_dir))
    cases = [r for r in source.records() if isinstance(r, Record) and r.id in role]
    if limit:
        cases = cases[:limit]
    gallery_cases = [c for c in cases if role[c.id] == "train"]
    query_cases = [c for c in cases if role[c.id] in ("dev", "test")]
    gallery = Gallery.ingest(gallery_cases, source.name, settings, encoder, home, progress)
    columns = gallery.columns(source.name, [c.id for c in gallery_cases])

    modality_of = _image_modalities(Path(data_dir))
    queries: list[tuple[Record, Path, str, str]] = []  # case, image, caption, modality
    for case in query_cases:
        captions = {t.image: t.text for t in case.texts if t.kind == "caption" and t.image is not None}
        for n, path in enumerate(case.images):
            if n in captions:
                queries.append((case, path, captions[n], modality_of.get(Path(path).stem, "")))
    g_attrs = [_attrs(c) for c in gallery_cases]
    q_attrs = [_attrs(c) for c, *_ in queries]
    fine = np.array([[bool(q.get("acr")) and q.get("acr") == g.get("acr") for g in g_attrs] for q in q_attrs])
    coarse = np.array([[bool(q.get("region")) and q.get("region") == g.get("region") and m in g.get("modality", "")
                        for g in g_attrs] for q, (_, _, _, m) in zip(q_attrs, queries, strict=True)])
    relevant = {"acr": fine, "region+modality": coarse}
    dev = np.array([role[c.id] == "dev" for c, *_ in queries])
    root = Path(data_dir).resolve()
    labels_img = [str(Path(p).resolve().relative_to(root)) for _, p, _, _ in queries]
    directions = [
        Direction("image->case", image_queries(gallery, encoder, [p for _, p, _, _ in queries], settings),
                  labels_img, relevant, dev_mask=dev),
        Direction("text->case", text_queries(gallery, encoder, [c for _, _, c, _ in queries]),
                  [c for _, _, c, _ in queries], relevant, dev_mask=dev),
    ]
    result = run_directions(gallery.ranker, columns, [gallery.table.ids[c] for c in columns], directions)
    meta = {"protocol": "medpix", "gallery": len(columns), "queries": len(queries),
            "relevance": {"main": "same ACR code (topic)", "coarse": "same Location Category and modality"},
            "split": "gallery: train cases; queries: images (and their captions) of dev cases (tuning full) "
                     "and test cases (every figure)"}
    return meta, result


def _attrs(case: Record) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in case.attributes:
        out[key] = f"{out[key]} {value}" if key in out and key == "modality" else out.get(key, value)
    return out


def _image_modalities(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for desc in json.loads((root / DESCRIPTIONS).read_text(encoding="utf-8")):
        if isinstance(desc, dict) and isinstance(desc.get("image"), str):
            sub = desc.get("Description") if isinstance(desc.get("Description"), dict) else {}
            out[desc["image"].strip()] = image_modality(desc.get("Type"), sub.get("Modality"))
    return out
