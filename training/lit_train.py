"""Training the `lit` heads: cached frozen features + symmetric InfoNCE with a learnable temperature.

`mmkg train encoder --data DIR` calls `train_lit(DIR, settings)`. DIR is in the Flickr layout
(`mmkg.training.captions`); with ``captions.<lang>.jsonl`` files beside ``captions.jsonl`` the model gets a
multilingual text head on multilingual-e5-small (`mmkg.encoders.lit`).

1. Frozen features from the workspace's feature cache (`mmkg.training.features`): a second run, or a run
   after a crash, re-encodes nothing that was already cached.
2. Heads. A fixed slice of the training images (``holdout``, chosen by hashing, never dev) is set
   aside; heads are trained on the rest with a symmetric InfoNCE loss. Each step takes a batch of
   distinct images, one random caption of each, and a random view (plain or horizontally flipped)
   of each image. Each text head has its own loss over the captions it embeds (MiniLM: Latin-script
   captions; e5: the others, plus ``ml_latin_captions`` Latin ones an image), and the losses are summed.
   The epoch with the best holdout rsum (summed over the caption files, each caption embedded as
   the encoder will embed it) is kept. With ``members`` > 1 this is repeated with seeds ``seed + 1``, ...
   (initialisation and batch order; the holdout stays the same) and the members are saved as one
   `LitEnsemble`. Holdout images are embedded as the encoder embeds them: the mean of their views' features.
3. Save heads + config (the `LitTrainConfig` among it) atomically to ``<home>/models/lit``
   (`mmkg.encoders.lit.save_lit_model`).
4. If ``dev_dir`` is given, report the retrieval metrics on it (reporting only, never selection).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmkg.encoders.backbones import MAX_THREADS, TextTower, limit_threads
from mmkg.encoders.factory import clear_encoder_cache
from mmkg.encoders.lit import (
    DEFAULT_ROUTING,
    TEXT,
    TEXT_ML,
    LitEnsemble,
    LitHeads,
    LitModel,
    embed_texts_routed,
    is_latin_text,
    lit_model_dir,
    load_lit_heads,
    mean_of_views,
    model_image_views,
    model_routing,
    save_lit_model,
    text_towers,
)
from mmkg.encoders.lit_config import LitTrainConfig, holdout_split
from mmkg.errors import UserInputError
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.settings import Settings
from mmkg.training.captions import BASE_CAPTIONS, PairSet, aligned_captions, extra_caption_files, read_caption_pairs
from mmkg.training.features import cached_image_features, cached_text_features

log = logging.getLogger(__name__)

Routing = dict[str, list[str]]


def train_lit(
    data_dir: Path,
    settings: Settings,
    *,
    dev_dir: Path | None = None,
    max_images: int | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train the lit heads on a Flickr-layout folder and save them to ``<home>/models/lit``.

    `options`: any `LitTrainConfig` field (None keeps the default); ``dev_dir``: a Flickr-layout folder to
    report metrics on; ``max_images``: use only the first N images of ``data_dir``; ``progress``: bars.
    Returns the training summary (also stored in the model's config.json).
    """
    t_start = time.perf_counter()
    config = LitTrainConfig.create(**options)
    if int(config.members) < 1:
        raise UserInputError(f"members must be at least 1, not {config.members}")
    limit_threads(MAX_THREADS)

    data = TrainingData.load(Path(data_dir), config, settings, max_images, progress)
    config = data.config
    t_features = time.perf_counter() - t_start

    fit, ho = holdout_split(data.image_keys, config.holdout, config.seed)
    if ho.size == 0:
        fit = np.arange(len(data.ok))
    arch = _arch(config, data)
    members: list[LitHeads] = []
    runs: list[FitResult] = []
    for seed in range(config.seed, config.seed + int(config.members)):
        torch.manual_seed(seed)
        members.append(_init_heads(arch, config, data, fit))
        label = f"training heads {seed - config.seed + 1}/{config.members}"
        runs.append(_fit_heads(members[-1], config, data, fit, ho, np.random.default_rng(seed), progress, label))
    heads: LitModel = members[0] if len(members) == 1 else LitEnsemble(members)

    summary = _summary(data, config, heads, fit, ho, runs, t_features)
    model_dir = lit_model_dir(settings)
    save_lit_model(model_dir, heads, arch, summary, data.routing, data.views)
    log.info("saved lit heads to %s", model_dir)
    if dev_dir is not None:
        summary["dev"] = {
            name: _round(evaluate_lit_folder(Path(dev_dir), settings, captions=name, progress=progress))
            for name in [BASE_CAPTIONS, *(extra_caption_files(Path(dev_dir)) if config.multilingual else [])]
        }
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    summary["model_dir"] = str(model_dir)
    clear_encoder_cache()
    return summary


@dataclass
class TrainingData:
    """What the heads learn from: the usable images' frozen features and each text head's captions."""

    data_dir: Path
    config: LitTrainConfig
    """The configuration with ``multilingual`` decided (by the folder when it was None)."""
    pairs: PairSet
    ok: list[int]
    """Indices into `pairs` of the images whose features exist (the rows of `image_feats`)."""
    image_feats: dict[str, np.ndarray]
    skipped_images: int
    caption_sets: dict[str, list[list[str]]]
    """Per captions file, the captions of each usable image."""
    routing: Routing
    tables: dict[str, CaptionTable]

    @property
    def views(self) -> tuple[str, ...]:
        """The image views the heads learn from, and so the views an image is embedded as the mean of."""
        return tuple(self.image_feats)

    def holdout_images(self, ho: np.ndarray) -> np.ndarray:
        """The holdout images' features as the encoder will embed them (the mean of their views)."""
        return mean_of_views({v: f[ho] for v, f in self.image_feats.items()}, self.views)

    @classmethod
    def load(
        cls, data_dir: Path, config: LitTrainConfig, settings: Settings, max_images: int | None, progress: bool
    ) -> TrainingData:
        pairs = read_caption_pairs(data_dir, max_images=max_images)
        extra_names = extra_caption_files(data_dir)
        multilingual = bool(extra_names) if config.multilingual is None else bool(config.multilingual)
        config = config.replace(multilingual=multilingual)
        views = ["plain", "hflip"] if config.hflip else ["plain"]
        image_feats, ok, skipped = cached_image_features(pairs.paths, settings, views, progress=progress)
        if len(ok) < 2:
            raise UserInputError(f"fewer than two readable images in {data_dir}")
        caption_sets = {BASE_CAPTIONS: [pairs.captions[i] for i in ok]}
        for name in extra_names if multilingual else []:
            caption_sets[name] = aligned_captions(data_dir, name, [pairs.paths[i] for i in ok])
        routing = DEFAULT_ROUTING if multilingual else {"latin": [TEXT], "other": [TEXT]}
        ml_latin = config.ml_latin_captions if multilingual else 0
        tables = _caption_tables(caption_sets, routing, ml_latin, settings, progress)
        return cls(data_dir, config, pairs, ok, image_feats, len(skipped), caption_sets, routing, tables)

    @property
    def image_keys(self) -> list[str]:
        return [str(self.pairs.paths[i].name) for i in self.ok]


def _arch(config: LitTrainConfig, data: TrainingData) -> dict[str, Any]:
    """The heads' shapes, saved with the weights (`heads_from_arch` rebuilds them)."""
    arch: dict[str, Any] = {
        "image_dim": int(data.image_feats["plain"].shape[1]),
        "text_dim": int(data.tables[TEXT].feats.shape[1]) if TEXT in data.tables else TextTower.dim,
        "embed_dim": int(config.embed_dim),
        "hidden": int(config.hidden),
        "depth": int(config.depth),
        "dropout": float(config.dropout),
        "input_dropout": float(config.input_dropout),
    }
    if config.multilingual:
        arch["ml_text_dim"] = int(data.tables[TEXT_ML].feats.shape[1])
    if config.members > 1:
        arch["members"] = int(config.members)
    return arch


def _init_heads(arch: dict[str, Any], config: LitTrainConfig, data: TrainingData, fit: np.ndarray) -> LitHeads:
    """Fresh heads: the initial temperature, and each head's input statistics from the fitting images."""
    heads = LitHeads.from_arch(arch)
    plain = data.image_feats["plain"]
    with torch.no_grad():
        heads.logit_scale.fill_(math.log(1.0 / float(config.init_temperature)))
        heads.image.set_input_stats(plain[fit].mean(0), plain[fit].std(0))
        for head, table in data.tables.items():
            rows = table.rows(fit)
            if rows.size:
                heads.text_head(head).set_input_stats(table.feats[rows].mean(0), table.feats[rows].std(0))
    return heads


@dataclass
class FitResult:
    """How the head training went: the kept epoch, its holdout metrics per captions file, the history."""

    epochs: int
    best_epoch: int
    holdout: dict[str, dict[str, float]]
    history: list[dict[str, float]] = field(default_factory=list)
    final_loss: float = float("nan")
    seconds: float = 0.0


def _optimiser(heads: LitHeads, config: LitTrainConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    """AdamW (no decay on biases, norms and the temperature) with one warm-up epoch, then a cosine decay."""
    decay = [p for n, p in heads.named_parameters() if n != "logit_scale" and p.ndim > 1]
    no_decay = [p for n, p in heads.named_parameters() if n != "logit_scale" and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": float(config.weight_decay)},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": [heads.logit_scale], "weight_decay": 0.0},
        ],
        lr=float(config.lr),
    )
    total_steps = steps_per_epoch * int(config.epochs)
    warmup = steps_per_epoch

    def lr_at(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_at)


def _fit_heads(
    heads: LitHeads,
    config: LitTrainConfig,
    data: TrainingData,
    fit: np.ndarray,
    ho: np.ndarray,
    rng: np.random.Generator,
    progress: bool,
    label: str = "training heads",
) -> FitResult:
    """Train the heads for `config.epochs`, every `eval_every` epochs scoring the holdout; the best-scoring
    epoch's weights are loaded back at the end (the last epoch's when there is no holdout)."""
    bs = max(2, min(int(config.batch_size), len(fit)))
    steps_per_epoch = max(1, len(fit) // bs)
    epochs = int(config.epochs)
    opt, sched = _optimiser(heads, config, steps_per_epoch)
    views = {v: torch.from_numpy(f) for v, f in data.image_feats.items()}
    holdout_sets = _holdout_sets(data.caption_sets, ho)
    holdout_images = data.holdout_images(ho)

    heads.train()
    best_rsum, best_state = -1.0, None
    result = FitResult(epochs=epochs, best_epoch=epochs, holdout={})
    t_heads = time.perf_counter()
    bar = tqdm(range(epochs), desc=label, unit="epoch", disable=not progress)
    for epoch in bar:
        order = fit[rng.permutation(len(fit))]
        batches = [order[step * bs : (step + 1) * bs] for step in range(steps_per_epoch)]
        result.final_loss = _train_epoch(heads, opt, sched, views, data.tables, batches, config.all_captions, rng)
        last = epoch == epochs - 1
        if holdout_sets and (last or (epoch + 1) % int(config.eval_every) == 0):
            by_file = _evaluate_sets(heads, data.routing, holdout_images, holdout_sets, data.tables)
            rsum = sum(m["rsum"] for m in by_file.values())
            result.history.append(
                {"epoch": epoch + 1, "loss": round(result.final_loss, 4), "holdout_rsum": round(rsum, 2)}
            )
            bar.set_postfix(loss=f"{result.final_loss:.3f}", holdout_rsum=f"{rsum:.1f}")
            if rsum > best_rsum:
                best_rsum, best_state = rsum, copy.deepcopy(heads.state_dict())
                result.best_epoch, result.holdout = epoch + 1, by_file
        else:
            bar.set_postfix(loss=f"{result.final_loss:.3f}")
    if best_state is not None:
        heads.load_state_dict(best_state)
    heads.eval()
    result.seconds = time.perf_counter() - t_heads
    return result


def _train_epoch(
    heads: LitHeads,
    opt: torch.optim.Optimizer,
    sched: Any,
    views: dict[str, torch.Tensor],
    tables: dict[str, CaptionTable],
    batches: list[np.ndarray],
    all_captions: bool,
    rng: np.random.Generator,
) -> float:
    """One pass over `batches` of image rows; the mean loss. Each image is seen plain or (at random) flipped."""
    running = 0.0
    for idx in batches:
        x = views["plain"][idx]
        if "hflip" in views:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)[:, None]
            x = torch.where(flip, views["hflip"][idx], x)
        ie = heads.embed_images(x)
        loss = torch.zeros(())
        for head, table in tables.items():
            owner, cap = table.batch(idx, bool(all_captions), rng)
            if cap.size:
                te = heads.embed_texts(table.tensor[cap], head)
                loss = loss + contrastive_loss(ie, te, torch.from_numpy(owner), heads.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
    return running / len(batches)


def _summary(
    data: TrainingData,
    config: LitTrainConfig,
    heads: LitModel,
    fit: np.ndarray,
    ho: np.ndarray,
    runs: list[FitResult],
    seconds_features: float,
) -> dict[str, Any]:
    """The training summary saved in the model's config.json (``training``); ``holdout`` is the saved model's
    (the ensemble's, with several members), ``members`` how each member's training went."""
    holdout = runs[0].holdout
    if len(runs) > 1 and ho.size:
        holdout = _evaluate_sets(heads, data.routing, data.holdout_images(ho),
                                 _holdout_sets(data.caption_sets, ho), data.tables)
    return {
        "data": str(data.data_dir),
        "images": len(data.ok),
        "pairs": sum(len(c) for c in data.caption_sets[BASE_CAPTIONS]),
        "pairs_by_file": {name: sum(len(c) for c in sets) for name, sets in data.caption_sets.items()},
        "captions_by_head": {head: int(table.feats.shape[0]) for head, table in data.tables.items()},
        "routing": data.routing,
        "skipped": len(data.pairs.skipped) + data.skipped_images,
        "fit_images": int(len(fit)),
        "holdout_images": int(ho.size),
        "epochs": int(config.epochs),
        "final_loss": round(float(np.mean([run.final_loss for run in runs])), 4),
        "temperature": round(heads.temperature, 5),
        "hyperparams": config.as_dict(),
        "holdout": _round(holdout[BASE_CAPTIONS]) if holdout else None,
        "holdout_by_file": {name: _round(m) for name, m in holdout.items()},
        "members": [
            {
                "seed": int(config.seed) + i,
                "best_epoch": run.best_epoch,
                "final_loss": round(run.final_loss, 4),
                "holdout_rsum": round(sum(m["rsum"] for m in run.holdout.values()), 2) if run.holdout else None,
                "history": run.history,
                "seconds": round(run.seconds, 1),
            }
            for i, run in enumerate(runs)
        ],
        "seconds_features": round(seconds_features, 1),
        "seconds_heads": round(sum(run.seconds for run in runs), 1),
    }


def _round(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 2) for k, v in metrics.items()}


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


def evaluate_lit_folder(
    data_dir: Path,
    settings: Settings,
    captions: str = BASE_CAPTIONS,
    progress: bool = True,
    routing: Routing | None = None,
) -> dict[str, float]:
    """Image-text retrieval metrics of the workspace's lit encoder on a Flickr-layout folder, with the queries of
    one captions file (``captions.zh.jsonl``: Chinese queries), routed as the encoder routes them (or by
    `routing`, to compare routings). Frozen features from the cache (computed and cached on a miss)."""
    heads, config = load_lit_heads(lit_model_dir(settings))
    sims = lit_similarities(data_dir, settings, heads, routing or model_routing(config, heads),
                            model_image_views(config), captions, progress)
    return image_text_retrieval(*sims)


def lit_similarities(data_dir: Path, settings: Settings, heads: LitModel, routing: Routing,
                     image_views: Sequence[str] = ("plain",), captions: str = BASE_CAPTIONS,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(captions x images cosines, each caption's image) of a Flickr-layout folder under these heads, each
    image embedded from the mean of `image_views`: what `evaluate_lit_folder` scores, and what the ensemble
    benchmark compares member by member."""
    pairs = read_caption_pairs(Path(data_dir), name=captions)
    feats, ok, _ = cached_image_features(pairs.paths, settings, tuple(image_views), progress=progress)
    caps = [pairs.captions[i] for i in ok]
    texts = [c for cs in caps for c in cs]
    text_image = np.repeat(np.arange(len(caps)), [len(c) for c in caps])

    def features(head: str, group: list[str]) -> np.ndarray:
        return cached_text_features(group, settings, progress=progress, head=head)

    te = embed_texts_routed(heads, routing, texts, features)
    heads.eval()
    with torch.inference_mode():
        image = np.ascontiguousarray(mean_of_views(feats, tuple(image_views)))
        ie = heads.embed_images(torch.from_numpy(image)).numpy()
    return te @ ie.T, text_image


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
    heads: LitModel,
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
