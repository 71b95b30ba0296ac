"""Training the `lit` heads: cached frozen features + symmetric InfoNCE with a learnable temperature.

`mmkg train encoder --data DIR` calls `train_lit(DIR, settings)`. DIR is in the Flickr layout:
``captions.jsonl`` with one ``{"image": "images/NAME.jpg", "captions": [...]}`` a line, and
optionally ``captions.<lang>.jsonl`` beside it (the same images, captions in another language).
With those, the model gets a multilingual text head on multilingual-e5-small (`mmkg.encoders.lit`).

1. Frozen features. Every image is hashed (sha256 of its file bytes) and looked up in the feature
   cache for both views (``plain`` and ``hflip``); only misses are decoded (`load_image`) and run
   through EfficientNet-Lite0, in batches, written to the cache chunk by chunk. Captions likewise
   (keyed by the sha256 of the text, one cache namespace per text tower). A second run, or a run
   after a crash, re-encodes nothing that was already cached.
2. Heads. A fixed slice of the training images (``holdout``, chosen by hashing, never dev) is set
   aside; heads are trained on the rest with a symmetric InfoNCE loss. Each step takes a batch of
   distinct images, one random caption of each, and a random view (plain or horizontally flipped)
   of each image. Each text head has its own loss over the captions it embeds (MiniLM: Latin-script
   captions; e5: the others, plus ``ml_latin_captions`` Latin ones an image), and the losses are summed.
   The epoch with the best holdout rsum (summed over the caption files, each caption embedded as
   the encoder will embed it) is kept.
3. Save heads + config atomically to ``<home>/models/lit`` (`mmkg.encoders.lit.save_lit_model`).
4. If ``dev_dir`` is given, report the retrieval metrics on it (reporting only, never selection).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmkg.encoders.backbones import (
    IMAGE_FEATURE,
    IMAGE_VIEWS,
    MAX_THREADS,
    get_image_tower,
    get_ml_text_tower,
    get_text_tower,
    limit_threads,
)
from mmkg.encoders.feature_cache import FeatureCache, sha256_bytes, text_key
from mmkg.encoders.lit import (
    DEFAULT_ROUTING,
    TEXT,
    TEXT_ML,
    TOWER_FEATURES,
    LitHeads,
    embed_texts_routed,
    is_latin_text,
    lit_model_dir,
    model_routing,
    save_lit_model,
    text_towers,
)
from mmkg.errors import BadImageError, UserInputError
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.ingest.images import load_image, read_image_bytes, resolve_inside
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

EXTRACT_CHUNK = 256
"""Images per cache chunk while extracting: the most work a crash can lose."""

DEFAULTS: dict[str, Any] = {
    "embed_dim": 512,
    "hidden": 2048,
    "depth": 2,
    "dropout": 0.5,
    "input_dropout": 0.3,
    "all_captions": True,
    "epochs": 40,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "init_temperature": 0.07,
    "hflip": True,
    "holdout": 500,
    "eval_every": 2,
    "seed": 0,
    "multilingual": None,
    "ml_latin_captions": 0,
}
"""Head-training hyperparameters; `train_lit(..., **hyperparams)` overrides any of them.
``multilingual``: train the e5 text head (None: when the folder has ``captions.<lang>.jsonl``).
``ml_latin_captions``: the e5 head also learns from the first N Latin-script captions of each image (0: only
from other scripts; e5's own cross-lingual alignment carries what it learns to languages without captions)."""

BASE_CAPTIONS = "captions.jsonl"


@dataclass(frozen=True)
class PairSet:
    """Images of a Flickr-layout folder and their captions (images that could not be read are left out)."""

    paths: list[Path]
    captions: list[list[str]]
    skipped: list[tuple[str, str]]


def read_captions_jsonl(data_dir: Path, max_images: int | None = None, name: str = BASE_CAPTIONS) -> PairSet:
    """Parse ``DIR/captions.jsonl`` (or another captions file there); bad lines and unsafe paths are
    reported and skipped."""
    data_dir = Path(data_dir)
    index = data_dir / name
    if not index.is_file():
        raise UserInputError(f"no {name} in {data_dir} (expected the Flickr layout)")
    paths: list[Path] = []
    captions: list[list[str]] = []
    skipped: list[tuple[str, str]] = []
    with index.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                rel = obj["image"]
                caps = [str(c).strip() for c in obj["captions"] if str(c).strip()]
                if not isinstance(rel, str) or not caps:
                    raise ValueError("needs an image path and at least one caption")
                path = resolve_inside(data_dir, rel)
            except (ValueError, KeyError, TypeError, BadImageError) as exc:
                skipped.append((f"{index.name}:{lineno}", str(exc)))
                log.warning("skipping %s line %d: %s", index, lineno, exc)
                continue
            paths.append(path)
            captions.append(caps)
            if max_images is not None and len(paths) >= max_images:
                break
    if not paths:
        raise UserInputError(f"no usable image-caption pairs in {index}")
    return PairSet(paths, captions, skipped)


def extra_caption_files(data_dir: Path) -> list[str]:
    """The ``captions.<lang>.jsonl`` files beside ``captions.jsonl``, by name."""
    return sorted(p.name for p in Path(data_dir).glob("captions.*.jsonl") if p.is_file())


def aligned_captions(data_dir: Path, name: str, paths: Sequence[Path]) -> list[list[str]]:
    """The captions a file gives each of `paths` (an empty list for an image it does not name)."""
    by_path: dict[Path, list[str]] = {}
    pairs = read_captions_jsonl(data_dir, name=name)
    for path, caps in zip(pairs.paths, pairs.captions, strict=True):
        by_path.setdefault(path.resolve(), []).extend(caps)
    return [by_path.get(Path(p).resolve(), []) for p in paths]


def image_cache(settings: Settings, view: str) -> FeatureCache:
    tower_dim = 1280
    return FeatureCache(Workspace(Path(settings.home)).cache_dir, f"{IMAGE_FEATURE}/{view}", tower_dim)


def text_cache(settings: Settings, head: str = TEXT) -> FeatureCache:
    """The cache of the frozen features a text head takes: one namespace per text tower."""
    return FeatureCache(Workspace(Path(settings.home)).cache_dir, f"{TOWER_FEATURES[head]}/text", 384)


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
    caches = {view: image_cache(settings, view) for view in views}
    feats: dict[str, np.ndarray] = {}
    found: dict[str, np.ndarray] = {}
    for view in views:
        feats[view], found[view] = caches[view].lookup(keys)
    missing = sorted({j for view in views for j in np.flatnonzero(~found[view]).tolist()})
    bad_rows: set[int] = set()
    if missing:
        tower = get_image_tower(settings.device)
        log.info("encoding %d images (%s) with %s", len(missing), "+".join(views), IMAGE_FEATURE)
        bar = tqdm(total=len(missing), desc="image features", unit="img", disable=not progress)
        with bar:
            for start in range(0, len(missing), EXTRACT_CHUNK):
                rows = missing[start : start + EXTRACT_CHUNK]
                images, good = [], []
                for j in rows:
                    try:
                        img, _ = load_image(paths[ok[j]], settings.max_image_bytes, settings.max_image_pixels)
                    except BadImageError as exc:
                        skipped.append((str(paths[ok[j]]), str(exc)))
                        log.warning("skipping image: %s", exc)
                        bad_rows.add(j)
                        continue
                    images.append(img)
                    good.append(j)
                for view in views:
                    need = [k for k, j in enumerate(good) if not found[view][j]]
                    if not need:
                        continue
                    f = tower.features([images[k] for k in need], view=view, batch_size=32)
                    rows_v = [good[k] for k in need]
                    feats[view][rows_v] = f
                    caches[view].put([keys[j] for j in rows_v], f)
                bar.update(len(rows))
        for cache in caches.values():
            cache.compact()
    keep = [j for j in range(len(keys)) if j not in bad_rows]
    out = {view: feats[view][keep] for view in views}
    return out, [ok[j] for j in keep], skipped


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


def contrastive_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, owner: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of distinct images and all their captions.

    ``owner[t]`` is the batch row of the image that caption t describes. Text->image: each
    caption's softmax over the batch's images. Image->text: for each (image, own caption) pair,
    the softmax over that caption and every caption of the *other* images (the image's other
    captions are not treated as negatives). With one caption per image this is exactly CLIP's loss.
    """
    logits = logit_scale.exp().clamp(max=100.0) * text_emb @ image_emb.T  # (captions, images)
    t2i = F.cross_entropy(logits, owner)
    per_image = logits.T  # (images, captions)
    positive = owner[None, :] == torch.arange(image_emb.shape[0], device=owner.device)[:, None]
    negatives = torch.logsumexp(per_image.masked_fill(positive, float("-inf")), dim=1)  # (images,)
    pos_logits = per_image.T[torch.arange(owner.shape[0]), owner]  # (captions,) own image's logit
    neg = negatives[owner]
    i2t = (torch.logaddexp(pos_logits, neg) - pos_logits).mean()
    return 0.5 * (t2i + i2t)


def holdout_split(keys: Sequence[str], holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed slice of the training images for model selection, chosen by hashing (order-free)."""
    n = len(keys)
    holdout = min(holdout, n // 5)
    ranks = np.argsort([hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in keys], kind="stable")
    ho = np.sort(ranks[:holdout])
    fit = np.sort(ranks[holdout:])
    return fit, ho


def _round(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 2) for k, v in metrics.items()}


def train_lit(data_dir: Path, settings: Settings, **hyperparams: Any) -> dict[str, Any]:
    """Train the lit heads on a Flickr-layout folder and save them to ``<home>/models/lit``.

    Keyword arguments: any of `DEFAULTS` (head and optimiser hyperparameters), plus
    ``dev_dir`` (a Flickr-layout folder to report metrics on), ``max_images`` (use only the first
    N images of ``data_dir``), ``progress`` (progress bars, default True).
    Returns the training summary (also stored in the model's config.json).
    """
    t_start = time.perf_counter()
    dev_dir = hyperparams.pop("dev_dir", None)
    max_images = hyperparams.pop("max_images", None)
    progress = bool(hyperparams.pop("progress", True))
    unknown = set(hyperparams) - set(DEFAULTS)
    if unknown:
        raise UserInputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    hp = {**DEFAULTS, **{k: v for k, v in hyperparams.items() if v is not None}}
    limit_threads(MAX_THREADS)
    torch.manual_seed(int(hp["seed"]))
    rng = np.random.default_rng(int(hp["seed"]))

    data_dir = Path(data_dir)
    pairs = read_captions_jsonl(data_dir, max_images=max_images)
    extra_names = extra_caption_files(data_dir)
    multilingual = bool(extra_names) if hp["multilingual"] is None else bool(hp["multilingual"])
    hp["multilingual"] = multilingual
    views = ["plain", "hflip"] if hp["hflip"] else ["plain"]
    img_feats, ok, skipped_imgs = cached_image_features(pairs.paths, settings, views, progress=progress)
    if len(ok) < 2:
        raise UserInputError(f"fewer than two readable images in {data_dir}")
    caption_sets = {BASE_CAPTIONS: [pairs.captions[i] for i in ok]}
    for name in extra_names if multilingual else []:
        caption_sets[name] = aligned_captions(data_dir, name, [pairs.paths[i] for i in ok])
    routing = DEFAULT_ROUTING if multilingual else {"latin": [TEXT], "other": [TEXT]}
    ml_latin = int(hp["ml_latin_captions"]) if multilingual else 0
    tables = _caption_tables(caption_sets, routing, ml_latin, settings, progress)
    t_features = time.perf_counter() - t_start

    image_keys = [str(pairs.paths[i].name) for i in ok]
    fit, ho = holdout_split(image_keys, int(hp["holdout"]), int(hp["seed"]))
    if ho.size == 0:
        fit = np.arange(len(ok))
    arch = {
        "image_dim": int(img_feats["plain"].shape[1]),
        "text_dim": int(tables[TEXT].feats.shape[1]) if TEXT in tables else 384,
        "embed_dim": int(hp["embed_dim"]),
        "hidden": int(hp["hidden"]),
        "depth": int(hp["depth"]),
        "dropout": float(hp["dropout"]),
        "input_dropout": float(hp["input_dropout"]),
    }
    if multilingual:
        arch["ml_text_dim"] = int(tables[TEXT_ML].feats.shape[1])
    heads = LitHeads.from_arch(arch)
    with torch.no_grad():
        heads.logit_scale.fill_(math.log(1.0 / float(hp["init_temperature"])))
        heads.image.set_input_stats(img_feats["plain"][fit].mean(0), img_feats["plain"][fit].std(0))
        for head, table in tables.items():
            rows = table.rows(fit)
            if rows.size:
                heads.text_head(head).set_input_stats(table.feats[rows].mean(0), table.feats[rows].std(0))

    decay = [p for n, p in heads.named_parameters() if n != "logit_scale" and p.ndim > 1]
    no_decay = [p for n, p in heads.named_parameters() if n != "logit_scale" and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": float(hp["weight_decay"])},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": [heads.logit_scale], "weight_decay": 0.0},
        ],
        lr=float(hp["lr"]),
    )
    bs = max(2, min(int(hp["batch_size"]), len(fit)))
    steps_per_epoch = max(1, len(fit) // bs)
    epochs = int(hp["epochs"])
    total_steps = steps_per_epoch * epochs
    warmup = steps_per_epoch

    def lr_at(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    view_t = {v: torch.from_numpy(img_feats[v]) for v in views}
    holdout_sets = _holdout_sets(caption_sets, ho)

    heads.train()
    best: tuple[float, int, dict[str, Any] | None, dict[str, dict[str, float]]] = (-1.0, -1, None, {})
    history: list[dict[str, float]] = []
    loss_value = float("nan")
    t_heads = time.perf_counter()
    bar = tqdm(range(epochs), desc="training heads", unit="epoch", disable=not progress)
    for epoch in bar:
        order = fit[rng.permutation(len(fit))]
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * bs : (step + 1) * bs]
            x = view_t["plain"][idx]
            if "hflip" in view_t:
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)[:, None]
                x = torch.where(flip, view_t["hflip"][idx], x)
            ie = heads.embed_images(x)
            loss = torch.zeros(())
            for head, table in tables.items():
                owner, cap = table.batch(idx, bool(hp["all_captions"]), rng)
                if cap.size:
                    te = heads.embed_texts(table.tensor[cap], head)
                    loss = loss + contrastive_loss(ie, te, torch.from_numpy(owner), heads.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        loss_value = running / steps_per_epoch
        last = epoch == epochs - 1
        if holdout_sets and (last or (epoch + 1) % int(hp["eval_every"]) == 0):
            by_file = _evaluate_sets(heads, routing, img_feats["plain"][ho], holdout_sets, tables)
            rsum = sum(m["rsum"] for m in by_file.values())
            history.append({"epoch": epoch + 1, "loss": round(loss_value, 4), "holdout_rsum": round(rsum, 2)})
            bar.set_postfix(loss=f"{loss_value:.3f}", holdout_rsum=f"{rsum:.1f}")
            if rsum > best[0]:
                best = (rsum, epoch + 1, copy.deepcopy(heads.state_dict()), by_file)
        else:
            bar.set_postfix(loss=f"{loss_value:.3f}")
    if best[2] is not None:
        heads.load_state_dict(best[2])
    heads.eval()
    t_heads = time.perf_counter() - t_heads

    summary: dict[str, Any] = {
        "data": str(data_dir),
        "images": len(ok),
        "pairs": sum(len(c) for c in caption_sets[BASE_CAPTIONS]),
        "pairs_by_file": {name: sum(len(c) for c in sets) for name, sets in caption_sets.items()},
        "captions_by_head": {head: int(table.feats.shape[0]) for head, table in tables.items()},
        "routing": routing,
        "skipped": len(pairs.skipped) + len(skipped_imgs),
        "fit_images": int(len(fit)),
        "holdout_images": int(ho.size),
        "epochs": epochs,
        "best_epoch": best[1] if best[2] is not None else epochs,
        "final_loss": round(loss_value, 4),
        "temperature": round(heads.temperature, 5),
        "hyperparams": hp,
        "holdout": _round(best[3][BASE_CAPTIONS]) if best[3] else None,
        "holdout_by_file": {name: _round(m) for name, m in best[3].items()},
        "history": history,
        "seconds_features": round(t_features, 1),
        "seconds_heads": round(t_heads, 1),
    }
    model_dir = lit_model_dir(settings)
    save_lit_model(model_dir, heads, arch, summary, routing)
    log.info("saved lit heads to %s", model_dir)
    if dev_dir is not None:
        summary["dev"] = {
            name: _round(evaluate_lit_folder(Path(dev_dir), settings, heads=heads, captions=name, progress=progress))
            for name in [BASE_CAPTIONS, *(extra_caption_files(Path(dev_dir)) if multilingual else [])]
        }
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    summary["model_dir"] = str(model_dir)
    try:
        from mmkg.encoders.factory import clear_encoder_cache

        clear_encoder_cache()
    except ImportError:  # pragma: no cover
        pass
    return summary


def evaluate_lit_folder(
    data_dir: Path,
    settings: Settings,
    heads: LitHeads | None = None,
    captions: str = BASE_CAPTIONS,
    progress: bool = True,
    routing: dict[str, list[str]] | None = None,
) -> dict[str, float]:
    """Image-text retrieval metrics of the lit encoder on a Flickr-layout folder, with the queries of
    one captions file (``captions.zh.jsonl``: Chinese queries), routed as the encoder routes them
    (or by `routing`, to compare routings). Plain view; frozen features from the cache (computed and
    cached on a miss)."""
    from mmkg.encoders.lit import load_lit_heads

    config: dict[str, Any] = {}
    if heads is None:
        heads, config = load_lit_heads(lit_model_dir(settings))
    routing = routing or model_routing(config, heads)
    pairs = read_captions_jsonl(Path(data_dir), name=captions)
    feats, ok, _ = cached_image_features(pairs.paths, settings, ("plain",), progress=progress)
    caps = [pairs.captions[i] for i in ok]
    texts = [c for cs in caps for c in cs]
    text_image = np.repeat(np.arange(len(caps)), [len(c) for c in caps])

    def features(head: str, group: list[str]) -> np.ndarray:
        return cached_text_features(group, settings, progress=progress, head=head)

    te = embed_texts_routed(heads, routing, texts, features)
    heads.eval()
    with torch.inference_mode():
        ie = heads.embed_images(torch.from_numpy(np.ascontiguousarray(feats["plain"]))).numpy()
    return image_text_retrieval(te @ ie.T, text_image)


@dataclass
class CaptionTable:
    """The captions one text head learns from: frozen features, grouped by image (`start`, `count`)."""

    texts: list[str]
    feats: np.ndarray
    start: np.ndarray
    count: np.ndarray

    def __post_init__(self) -> None:
        self.tensor = torch.from_numpy(self.feats)
        self.row_of = {t: i for i, t in enumerate(self.texts)}

    def rows(self, images: np.ndarray) -> np.ndarray:
        parts = [np.arange(self.start[i], self.start[i] + self.count[i]) for i in images]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def batch(self, images: np.ndarray, all_captions: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(owner, caption rows) for a batch of images: every caption of each, or one at random."""
        counts = self.count[images]
        if all_captions:
            return np.repeat(np.arange(len(images)), counts), self.rows(images)
        has = np.flatnonzero(counts > 0)
        pick = self.start[images[has]] + (rng.random(has.size) * counts[has]).astype(np.int64)
        return has, pick


def _caption_tables(
    caption_sets: dict[str, list[list[str]]],
    routing: dict[str, list[str]],
    ml_latin: int,
    settings: Settings,
    progress: bool,
) -> dict[str, CaptionTable]:
    """Each text head's captions (the routing's, plus `ml_latin` Latin ones an image for e5), with features."""
    n_images = len(next(iter(caption_sets.values())))
    per_head: dict[str, list[list[str]]] = {}
    latin_to_ml = np.zeros(n_images, dtype=np.int64)
    for caps_per_image in caption_sets.values():
        for j, caps in enumerate(caps_per_image):
            for caption in caps:
                heads = set(text_towers(caption, routing))
                if TEXT_ML not in heads and latin_to_ml[j] < ml_latin and is_latin_text(caption):
                    heads.add(TEXT_ML)
                    latin_to_ml[j] += 1
                for head in sorted(heads):
                    if head not in per_head:
                        per_head[head] = [[] for _ in range(n_images)]
                    per_head[head][j].append(caption)
    tables: dict[str, CaptionTable] = {}
    for head in sorted(per_head):
        grouped = per_head[head]
        flat = [c for caps in grouped for c in caps]
        count = np.asarray([len(c) for c in grouped], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        feats = cached_text_features(flat, settings, progress=progress, head=head)
        tables[head] = CaptionTable(flat, feats, start, count)
    return tables


def _holdout_sets(caption_sets: dict[str, list[list[str]]], ho: np.ndarray) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per captions file: the holdout images' captions and, for each, its image's row in `ho`."""
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for name, caps_per_image in caption_sets.items():
        caps = [caps_per_image[i] for i in ho]
        texts = [c for cs in caps for c in cs]
        if texts:
            out[name] = (texts, np.repeat(np.arange(len(caps)), [len(c) for c in caps]))
    return out


def _evaluate_sets(
    heads: LitHeads,
    routing: dict[str, list[str]],
    img: np.ndarray,
    sets: dict[str, tuple[list[str], np.ndarray]],
    tables: dict[str, CaptionTable],
) -> dict[str, dict[str, float]]:
    """Holdout metrics per captions file, each caption embedded as the encoder will embed it."""
    was_training = heads.training
    heads.eval()
    with torch.inference_mode():
        ie = heads.embed_images(torch.from_numpy(np.ascontiguousarray(img))).numpy()

    def features(head: str, group: list[str]) -> np.ndarray:
        table = tables[head]
        return table.feats[[table.row_of[t] for t in group]]

    out = {}
    for name, (texts, text_image) in sets.items():
        te = embed_texts_routed(heads, routing, texts, features)
        out[name] = image_text_retrieval(te @ ie.T, text_image)
    heads.train(was_training)
    return out
