"""Frozen tower features for training and evaluating the lit heads, from the workspace's feature cache.

Every image is hashed (sha256 of its file bytes) and looked up in the cache for each view (``plain``,
``hflip``); only misses are decoded and run through EfficientNet-Lite0, in batches, written to the cache
chunk by chunk. Captions likewise (keyed by the sha256 of the text, one cache namespace per text tower).
A second run, or a run after a crash, re-encodes nothing that was already cached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mmkg.encoders.backbones import (
    IMAGE_FEATURE,
    IMAGE_VIEWS,
    ImageTower,
    MultilingualTextTower,
    TextTower,
    get_image_tower,
    get_ml_text_tower,
    get_text_tower,
)
from mmkg.encoders.feature_cache import FeatureCache, sha256_bytes, text_key
from mmkg.encoders.lit import TEXT, TEXT_ML, TOWER_FEATURES
from mmkg.errors import BadImageError
from mmkg.ingest.images import load_image, read_image_bytes
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

EXTRACT_CHUNK = 256
"""Images per cache chunk while extracting: the most work a crash can lose."""


def image_cache(settings: Settings, view: str) -> FeatureCache:
    return FeatureCache(Workspace(Path(settings.home)).cache_dir, f"{IMAGE_FEATURE}/{view}", ImageTower.dim)


def text_cache(settings: Settings, head: str = TEXT) -> FeatureCache:
    """The cache of the frozen features a text head takes: one namespace per text tower."""
    dim = MultilingualTextTower.dim if head == TEXT_ML else TextTower.dim
    return FeatureCache(Workspace(Path(settings.home)).cache_dir, f"{TOWER_FEATURES[head]}/text", dim)


def cached_image_features(
    paths: Sequence[Path],
    settings: Settings,
    views: Sequence[str] = ("plain",),
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], list[int], list[tuple[str, str]]]:
    """Frozen image features for each view, from the cache or computed (and cached) on a miss.

    Returns ``(features by view, indices of the usable paths, skipped (path, reason))``; the
    feature rows follow the usable indices.
    """
    for view in views:
        if view not in IMAGE_VIEWS:
            raise ValueError(f"unknown view {view!r}")
    keys, ok, skipped = _hash_images(paths, settings, progress)
    caches = {view: image_cache(settings, view) for view in views}
    feats: dict[str, np.ndarray] = {}
    found: dict[str, np.ndarray] = {}
    for view in views:
        feats[view], found[view] = caches[view].lookup(keys)
    missing = sorted({j for view in views for j in np.flatnonzero(~found[view]).tolist()})
    bad_rows: set[int] = set()
    if missing:
        usable = [paths[i] for i in ok]
        log.info("encoding %d images (%s) with %s", len(missing), "+".join(views), IMAGE_FEATURE)
        bar = tqdm(total=len(missing), desc="image features", unit="img", disable=not progress)
        with bar:
            for start in range(0, len(missing), EXTRACT_CHUNK):
                rows = missing[start : start + EXTRACT_CHUNK]
                images, good = _decode_rows(rows, usable, settings, skipped)
                bad_rows.update(set(rows) - set(good))
                _encode_missing_views(images, good, keys, views, feats, found, caches, settings)
                bar.update(len(rows))
        for cache in caches.values():
            cache.compact()
    keep = [j for j in range(len(keys)) if j not in bad_rows]
    out = {view: feats[view][keep] for view in views}
    return out, [ok[j] for j in keep], skipped


def _hash_images(
    paths: Sequence[Path], settings: Settings, progress: bool
) -> tuple[list[str], list[int], list[tuple[str, str]]]:
    """The sha256 of each readable image's bytes, the indices of those images, and the unreadable ones."""
    keys: list[str] = []
    ok: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, path in enumerate(tqdm(paths, desc="hashing images", unit="img", disable=not progress or len(paths) < 256)):
        try:
            data = read_image_bytes(path, settings.max_image_bytes)
        except BadImageError as exc:
            skipped.append((str(path), str(exc)))
            log.warning("skipping image: %s", exc)
            continue
        keys.append(sha256_bytes(data))
        ok.append(i)
    return keys, ok, skipped


def _decode_rows(
    rows: Sequence[int], paths: Sequence[Path], settings: Settings, skipped: list[tuple[str, str]]
) -> tuple[list[Image.Image], list[int]]:
    """The decoded images of `rows` and the rows that decoded; an undecodable one is added to `skipped`."""
    images, good = [], []
    for j in rows:
        try:
            img, _ = load_image(paths[j], settings.max_image_bytes, settings.max_image_pixels)
        except BadImageError as exc:
            skipped.append((str(paths[j]), str(exc)))
            log.warning("skipping image: %s", exc)
            continue
        images.append(img)
        good.append(j)
    return images, good


def _encode_missing_views(
    images: list[Image.Image],
    rows: list[int],
    keys: Sequence[str],
    views: Sequence[str],
    feats: dict[str, np.ndarray],
    found: dict[str, np.ndarray],
    caches: dict[str, FeatureCache],
    settings: Settings,
) -> None:
    """Run the image tower on the views each decoded image lacks; fill `feats` and the caches."""
    tower = get_image_tower(settings.device)
    for view in views:
        need = [k for k, j in enumerate(rows) if not found[view][j]]
        if not need:
            continue
        f = tower.features([images[k] for k in need], view=view, batch_size=32)
        rows_v = [rows[k] for k in need]
        feats[view][rows_v] = f
        caches[view].put([keys[j] for j in rows_v], f)


def cached_text_features(
    texts: Sequence[str], settings: Settings, progress: bool = True, head: str = TEXT
) -> np.ndarray:
    """Frozen text features (n, 384) for a text head, from the cache or computed (and cached) on a miss."""
    cache = text_cache(settings, head)
    keys = [text_key(t) for t in texts]
    feats, found = cache.lookup(keys)
    miss = np.flatnonzero(~found)
    if miss.size:
        # Unique texts only (Flickr has repeated captions).
        uniq: dict[str, int] = {}
        for j in miss.tolist():
            uniq.setdefault(keys[j], j)
        order = list(uniq.values())
        tower = get_ml_text_tower() if head == TEXT_ML else get_text_tower(settings.device)
        log.info("encoding %d captions with %s", len(order), TOWER_FEATURES[head])
        bar = tqdm(total=len(order), desc=f"{head} features", unit="text", disable=not progress)
        # e5 is about 5x slower than MiniLM: smaller chunks lose less to a crash
        step = EXTRACT_CHUNK * (4 if head == TEXT_ML else 16)
        with bar:
            for start in range(0, len(order), step):
                rows = order[start : start + step]
                f = tower.features([texts[j] for j in rows], batch_size=64 if head == TEXT_ML else 128)
                cache.put([keys[j] for j in rows], f)
                bar.update(len(rows))
        cache.compact()
        feats, found = cache.lookup(keys)
        assert found.all()
    return feats
