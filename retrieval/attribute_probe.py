"""What a photo shows, in the collection's own terms: a linear probe of each stated attribute over image vectors.

An image query states nothing, so for it the `attribute` signal had nothing to read, and graph expansion gave
every hit the type and colour of the few products the photo resembles most: a navy T-shirt's photo listed ten
black T-shirts, a green shirt's ten white shirts (fashion dev, image->image). The collection's stated
attributes are labels for its own images. A softmax regression per attribute key (colour, type, modality...)
over the records' image vectors, trained on the collection itself, predicts a query photo's values with their
probabilities, and those predictions link the query to attribute entities as a text query's words do, marked
predicted. On the fashion catalog's dev photos (the benchmark's held-out products, none of them trained on)
the probe names the colour for 52.5 % of them where the most similar product's colour is right for 35.3 %, and
the article type for 83.5 % (81.8 %).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

MIN_RECORDS = 3
"""Records with an image that must state a value before the probe learns it."""
MIN_PROBABILITY = 0.05
"""Predictions below this link nothing: a value that unlikely only dilutes the query's concepts (the one setting
measured: fashion dev photos, the probe's links alone as the `attribute` signal, mAP 49.5)."""
L2 = 1e-3
"""Weight decay on the mean cross-entropy (fashion dev, probe-only image->image mAP 47.7 / 49.5 / 48.9 at
1e-4 / 1e-3 / 1e-2)."""
CALIBRATION_SHARE = 0.2
"""Images held out to calibrate the probabilities (`_calibrate`)."""
MIN_CALIBRATION = 50
"""Below this many images on either side, probabilities stay as trained."""
TEMPERATURES = np.exp(np.linspace(np.log(0.5), np.log(20.0), 40))
MAX_IMAGES = 20_000
"""Images the probe trains on, at most (a seeded sample above it): its time is linear in them (two solves, one to
calibrate: 10 s for the fashion catalog's 4,000 images on this 2-core machine)."""


@dataclass(frozen=True)
class AttributeProbe:
    """Per attribute key, the entity columns of its values and a linear map from a standardised image vector to
    their logits; the keys share one matrix (`weight`: dim x all values) and are told apart by `heads`."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    columns: np.ndarray
    """(values,) the entity column (`RecordTable.entity_ids`) of each output."""
    heads: tuple[tuple[str, int, int], ...]
    """(key, first output, end) of each attribute key."""

    @classmethod
    def fit(cls, image_vecs: np.ndarray, rec_image: sp.csr_matrix, rec_entity: sp.csr_matrix,
            entity_names: list[str], attribute_entity: np.ndarray, seed: int = 0) -> AttributeProbe | None:
        """Trained on every image of a record that states a value of the key (its label); None when no key has
        two values of `MIN_RECORDS` records each."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for col in np.flatnonzero(attribute_entity):
            by_key[entity_names[col].split(":", 1)[0]].append(int(col))
        has_image = np.diff(rec_image.indptr) > 0
        counts = np.asarray((rec_entity[has_image] > 0).sum(axis=0)).ravel()
        heads: list[tuple[str, int, int]] = []
        columns: list[int] = []
        for key in sorted(by_key):
            kept = [c for c in by_key[key] if counts[c] >= MIN_RECORDS]
            if len(kept) >= 2:
                heads.append((key, len(columns), len(columns) + len(kept)))
                columns += kept
        if not heads or not len(image_vecs):
            return None
        cols = np.asarray(columns, np.int64)
        image_record = rec_image.T.tocsr()  # images x records
        owner = np.asarray(image_record.argmax(axis=1)).ravel()
        owned = np.diff(image_record.indptr) > 0
        rows = np.flatnonzero(owned)
        if len(rows) > MAX_IMAGES:
            rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_IMAGES, replace=False))
        stated = (rec_entity[owner[rows]][:, cols] > 0).toarray()  # images x values
        x = image_vecs[rows].astype(np.float32)
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        targets = np.zeros(stated.shape, np.float32)
        for _, lo, hi in heads:  # a record stating two values of a key (a photo of a dog and a cat) teaches each half
            block = stated[:, lo:hi]
            targets[:, lo:hi] = block / np.maximum(block.sum(axis=1, keepdims=True), 1)
        xs, ys = torch.from_numpy((x - mean) / scale), torch.from_numpy(targets)
        temperature = _calibrate(xs, ys, heads, seed)
        weight, bias = _train(xs, ys, heads, seed)
        for (_, lo, hi), t in zip(heads, temperature, strict=True):
            weight[:, lo:hi] /= t
            bias[lo:hi] /= t
        return cls(mean, scale, weight, bias, cols, tuple(heads))

    def predict(self, vectors: np.ndarray) -> list[list[tuple[int, float]]]:
        """Per query vector, (entity column, probability) of each value at `MIN_PROBABILITY` or above."""
        logits = ((vectors.astype(np.float32) - self.mean) / self.scale) @ self.weight + self.bias
        out: list[list[tuple[int, float]]] = [[] for _ in range(len(vectors))]
        for _, lo, hi in self.heads:
            z = logits[:, lo:hi]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            for i, j in zip(*np.nonzero(p >= MIN_PROBABILITY), strict=True):
                out[i].append((int(self.columns[lo + j]), float(p[i, j])))
        return out


def _calibrate(x: torch.Tensor, targets: torch.Tensor, heads: list[tuple[str, int, int]], seed: int) -> list[float]:
    """Per head, the temperature that makes its probabilities honest (Guo et al. 2017): trained on a seeded
    `1 - CALIBRATION_SHARE` of the images, the held-out rest's cross-entropy is least at it. The explanation shows
    the probability, and a photo whose colour is uncertain should credit every likely colour."""
    held = np.random.default_rng(seed).random(len(x)) < CALIBRATION_SHARE
    if held.sum() < MIN_CALIBRATION or (~held).sum() < MIN_CALIBRATION:
        return [1.0] * len(heads)
    weight, bias = _train(x[~held], targets[~held], heads, seed)
    logits = x[held].numpy() @ weight + bias
    out = []
    for _, lo, hi in heads:
        t = targets[held][:, lo:hi].numpy()
        known = t.sum(axis=1) > 0
        losses = [_cross_entropy(logits[known, lo:hi] / temp, t[known]) for temp in TEMPERATURES]
        out.append(float(TEMPERATURES[int(np.argmin(losses))]) if known.any() else 1.0)
    return out


def _cross_entropy(z: np.ndarray, t: np.ndarray) -> float:
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(t * log_p).sum(axis=1).mean())


def _train(x: torch.Tensor, targets: torch.Tensor, heads: list[tuple[str, int, int]], seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch L-BFGS on the summed mean cross-entropy of every head against its target distribution (an
    image whose record states no value of a key does not count for it), plus `L2`: a convex problem, so one
    deterministic solve."""
    torch.manual_seed(seed)
    n_out = heads[-1][2]
    weight = torch.zeros(x.shape[1], n_out, requires_grad=True)
    bias = torch.zeros(n_out, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ weight + bias
        loss = L2 * (weight**2).sum()
        for _, lo, hi in heads:
            t = targets[:, lo:hi]
            known = t.sum(dim=1) > 0
            if known.any():
                loss = loss + torch.nn.functional.cross_entropy(logits[known, lo:hi], t[known])
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()
