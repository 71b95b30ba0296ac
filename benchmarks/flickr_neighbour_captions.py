"""Two paths through the training collection on Flickr, scored on the dev split only (the lit holdout).

    MMKG_HOME=<trained workspace> .venv/bin/python benchmarks/flickr_neighbour_captions.py \
        --data ../shared/data/flickr8k/train

The knowledge is the training collection minus its hashed holdout; the holdout's 500 images and their
captions are the gallery and queries (what `mmkg eval --knowledge` tunes on). For each direction, the
encoder's cosine (z-scored per query) plus `beta` times a z-scored knowledge signal, over a grid of
(k, temperature, beta, image space):

* ``neighbours``: a gallery item is scored by its nearest training images (by image similarity): t2i, the
  query caption's best MiniLM cosine to each neighbour's captions; i2t, the query image's nearest training
  images' captions against the gallery caption.
* ``prototype``: the query goes first: t2i, its nearest training captions' images, averaged, against the
  gallery image; i2t, its nearest training images' mean caption against the gallery caption.

Prints the encoder's dev R@1 and the best grid point's (ranked by R@1 + rsum/100). No test query is read.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import numpy as np
import torch

from mmkg.encoders.lit import (
    embed_texts_routed,
    lit_model_dir,
    load_lit_heads,
    mean_of_views,
    model_image_views,
    model_routing,
)
from mmkg.encoders.lit_config import LitTrainConfig, holdout_split
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.settings import Settings
from mmkg.training.captions import read_caption_pairs
from mmkg.training.features import cached_image_features, cached_text_features

GRID = {"k": (5, 20), "temperature": (0.02, 0.05, 0.2), "beta": (0.1, 0.25, 0.5, 1.0), "space": ("lit", "raw")}


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)


def soft_top_k(sim: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """Each row's k best columns with softmax weights (the rest 0)."""
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sim, idx, 1)
    w = np.exp((top - top.max(1, keepdims=True)) / temperature)
    out = np.zeros_like(sim)
    np.put_along_axis(out, idx, w / w.sum(1, keepdims=True), 1)
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k/train"))
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("MMKG_HOME", ".mmkg")))
    args = ap.parse_args()
    settings = Settings.load(home=args.home)
    heads, config = load_lit_heads(lit_model_dir(settings))
    routing, views = model_routing(config, heads), model_image_views(config)
    pairs = read_caption_pairs(args.data)
    feats, ok, _ = cached_image_features(pairs.paths, settings, views, progress=False)
    raw_images = mean_of_views(feats, views)
    caps = [pairs.captions[i] for i in ok]
    defaults = LitTrainConfig()
    fit, ho = holdout_split([pairs.paths[i].name for i in ok], defaults.holdout, defaults.seed)

    def captions_of(rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        texts = [c for i in rows for c in caps[i]]
        return texts, np.repeat(np.arange(len(rows)), [len(caps[i]) for i in rows])

    def lit_texts(texts: list[str]) -> np.ndarray:
        return embed_texts_routed(heads, routing, texts,
                                  lambda h, g: cached_text_features(g, settings, progress=False, head=h))

    def minilm(texts: list[str]) -> np.ndarray:
        return unit(cached_text_features(texts, settings, progress=False, head="text"))

    with torch.inference_mode():
        lit_images = heads.embed_images(torch.from_numpy(np.ascontiguousarray(raw_images))).numpy()
    space = {"lit": lit_images, "raw": unit(raw_images)}
    k_texts, k_owner = captions_of(fit)
    k_minilm = minilm(k_texts)
    q_texts, q_owner = captions_of(ho)
    q_minilm, q_lit = minilm(q_texts), lit_texts(q_texts)
    base = q_lit @ lit_images[ho].T  # holdout captions x holdout images
    k_mean_caption = np.zeros((len(fit), k_minilm.shape[1]), np.float32)
    np.add.at(k_mean_caption, k_owner, k_minilm)
    caption_to_k_image = np.full((len(q_texts), len(fit)), -1.0, np.float32)
    np.maximum.at(caption_to_k_image.T, k_owner, (q_minilm @ k_minilm.T).T)
    k_image_to_caption = np.full((len(fit), len(q_texts)), -1.0, np.float32)
    np.maximum.at(k_image_to_caption, k_owner, k_minilm @ q_minilm.T)

    def knowledge(direction: str, path: str, k: int, temperature: float, space_name: str) -> np.ndarray:
        img = space[space_name]
        image_to_k = img[ho] @ img[fit].T  # holdout images x knowledge images
        if direction == "t2i" and path == "neighbours":
            return caption_to_k_image @ soft_top_k(image_to_k, k, temperature).T
        if direction == "t2i":
            proto = soft_top_k(q_minilm @ k_minilm.T, k, temperature) @ img[fit][k_owner]
            return proto @ img[ho].T
        if path == "neighbours":
            return (soft_top_k(image_to_k, k, temperature) @ k_image_to_caption).T
        return (soft_top_k(image_to_k, k, temperature) @ k_mean_caption @ q_minilm.T).T

    for direction in ("t2i", "i2t"):
        def per_query(x: np.ndarray, direction: str = direction) -> np.ndarray:
            """captions x images <-> queries x gallery (z-scores are per query)."""
            return x if direction == "t2i" else x.T

        def r1(scores: np.ndarray, direction: str = direction) -> tuple[float, float]:
            m = image_text_retrieval(scores, q_owner)
            return float(m[f"{direction}_R@1"]), float(m["rsum"])

        encoder = r1(base)
        base_z = zscore(per_query(base))
        print(f"{direction} encoder: dev R@1 {encoder[0]:.2f}, rsum {encoder[1]:.1f}")
        for path in ("neighbours", "prototype"):
            best, best_key = None, encoder[0] + encoder[1] / 100
            for k, temp, sp in itertools.product(GRID["k"], GRID["temperature"], GRID["space"]):
                signal = zscore(per_query(knowledge(direction, path, k, temp, sp)))
                for beta in GRID["beta"]:
                    got = r1(per_query(base_z + beta * signal))
                    if got[0] + got[1] / 100 > best_key:
                        best, best_key = (k, temp, beta, sp, got), got[0] + got[1] / 100
            if best is None:
                print(f"  {path}: no grid point above the encoder")
            else:
                print(f"  {path}: best k={best[0]} temperature={best[1]} beta={best[2]} space={best[3]}: "
                      f"dev R@1 {best[4][0]:.2f}, rsum {best[4][1]:.1f}")

if __name__ == "__main__":
    main()
