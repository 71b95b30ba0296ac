"""Ingest throughput by engine on one collection: the local engine (one encoding thread, then one per core)
and Ray Data with 1 and 2 encoder actors, each run into a fresh workspace, in one run; and with `--stages`
first, the cost of each ingest stage in core-milliseconds per record (one thread, one stage at a time).

    MMKG_HOME=<home with a trained model> .venv/bin/python benchmarks/ingest_scaling.py [--limit 1000]
        [--runs local1,local,ray1,ray2] [--ray-batch 32] [--stages]

Images/s counts the whole `Ingestor.run`: reading, decoding, encoding, entities, graph and index writes,
the collection-wide passes, and for Ray starting the local cluster and its actors.
The first N products of the fashion catalog are used; the machine's load average is printed beside.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

from PIL import Image

from mmkg.collection import open_collection
from mmkg.graph import ids
from mmkg.graph.memory import MemoryGraphStore
from mmkg.index.vectors import Vectors
from mmkg.ingest.batch import build_graph, decode_record, entity_text, prepare_record, read_record
from mmkg.ingest.detect import open_source
from mmkg.ingest.encoding import torch_threads
from mmkg.ingest.entities import extract_entities
from mmkg.ingest.pipeline import Ingestor
from mmkg.ingest.records import Record
from mmkg.settings import Settings
from mmkg.workspace import Workspace

RUNS = {
    "local1": {"ingest_engine": "local", "ingest_workers": 1},
    "local": {"ingest_engine": "local", "ingest_workers": 0},
    "ray1": {"ingest_engine": "ray", "ingest_workers": 1},
    "ray2": {"ingest_engine": "ray", "ingest_workers": 2},
}


def one_run(settings: Settings, data: Path, limit: int, tmp: Path, name: str) -> tuple[float, int]:
    """(seconds, new images) of one ingest into a fresh workspace."""
    home = tmp / name
    shutil.copytree(Workspace(settings.home).root / "models", home / "models")
    run_settings = settings.replace(home=home)
    source = open_source(data)
    with open_collection(run_settings) as col:
        started = time.perf_counter()
        report = Ingestor(run_settings, col.store, col.vectors, col.encoder).run(
            islice(source.records(), limit), source.name, total=limit, progress=False
        )
        seconds = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    return seconds, report.new_images


def stage_costs(settings: Settings, data: Path, limit: int, tmp: Path) -> None:
    """Each stage alone over the first `limit` records, on one core: CPU milliseconds per record."""
    from mmkg.encoders.factory import create_encoder

    source = open_source(data)
    records = [r for r in islice(source.records(), limit) if isinstance(r, Record)]
    encoder = create_encoder(settings)
    home = tmp / "stages"
    Workspace(home).ensure()
    cost: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = fn()
        cost[name] = (time.process_time() - t0) * 1000 / len(records)
        return out

    with torch_threads(1):
        encoder.encode_images([Image.new("RGB", (224, 224))]), encoder.encode_texts(["warm-up"])
        extract_entities(["a warm-up"])
        reads = timed("read + digest", lambda: [read_record(r, ids.record_id(source.name, r.id),
                                                            settings.max_image_bytes) for r in records])
        decoded = timed("decode", lambda: [decode_record(r, settings.max_image_pixels) for r in reads])
        prepared = [p for p in (prepare_record(r, d)[0] for r, d in zip(reads, decoded, strict=True)) if p]
        images = [im.image for p in prepared for im in p.images.values()]
        texts = {tid: text for p in prepared for tid, _, text, _ in p.texts}
        image_vecs = timed("image tower + head", lambda: encoder.encode_images(images))
        text_vecs = timed("text tower + head (texts)", lambda: encoder.encode_texts(list(texts.values())))
        found = timed("entities (spaCy)", lambda: dict(zip(texts, extract_entities(list(texts.values())),
                                                           strict=True)))
        graph = build_graph(prepared, source.name, found)
        names = {eid: entity_text(e) for eid, e in graph.entities.items()}
        entity_vecs = timed("text tower + head (entities)", lambda: encoder.encode_texts(list(names.values())))
        with MemoryGraphStore(Workspace(home).graph_dir) as store:
            timed("graph write (embedded store)", lambda: (store.upsert_nodes(list(graph.nodes.values())),
                                                          store.upsert_edges(graph.edges), store.commit()))
        vectors = Vectors.open(settings.replace(home=home), encoder.dim, encoder.fingerprint)
        timed("index write (FAISS, saved)", lambda: (
            vectors.images.add([im.iid for p in prepared for im in p.images.values()], image_vecs),
            vectors.texts.add(list(texts), text_vecs), vectors.entities.add(list(names), entity_vecs), vectors.save()))
    print(f"stage costs over {len(records)} records ({len(images)} images, {len(texts)} texts, "
          f"{len(names)} entities), CPU ms per record on one core:")
    for name, ms in cost.items():
        print(f"  {name:30s} {ms:7.2f}")
    print(f"  {'total':30s} {sum(cost.values()):7.2f}  -> at most {1000 / sum(cost.values()):.1f} records/s a core")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("MMKG_DATA", "../shared/data") + "/fashion")
    parser.add_argument("--limit", type=int, default=1000, help="first N products")
    parser.add_argument("--runs", default="local1,local,ray1,ray2", help=f"comma-separated, of {','.join(RUNS)}")
    parser.add_argument("--ray-batch", type=int, default=None, help="records per actor batch (default: settings)")
    parser.add_argument("--stages", action="store_true", help="first measure each stage's cost alone")
    args = parser.parse_args()

    base = Settings.load()
    if args.ray_batch:
        base = base.replace(ray_batch=args.ray_batch)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, CPU only")
    print(f"collection: first {args.limit} products of {args.data}; encoder from {base.home}; "
          f"ingest batch {base.ingest_batch}, ray batch {base.ray_batch}, image runtime {base.image_runtime}")
    with tempfile.TemporaryDirectory(prefix="mmkg-scaling-") as tmp:
        if args.stages:
            stage_costs(base, Path(args.data), args.limit, Path(tmp))
        for name in args.runs.split(","):
            settings = base.replace(**RUNS[name])
            load = os.getloadavg()[0]
            seconds, images = one_run(settings, Path(args.data), args.limit, Path(tmp), name)
            workers = settings.ingest_workers or os.cpu_count()
            print(f"  {name:7s} engine {settings.ingest_engine:5s} workers {workers}: {images} images in "
                  f"{seconds:6.1f} s = {images / seconds:5.1f} images/s   load average {load:.1f} at start",
                  flush=True)


if __name__ == "__main__":
    main()
