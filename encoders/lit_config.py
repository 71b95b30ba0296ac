"""The lit heads' training configuration: typed, saved in the model's config.json beside the weights it produced.

`LitTrainConfig.create(**overrides)` is the one factory (defaults, then the caller's options);
`LitTrainConfig.from_saved(config)` reads it back from a model's config.json (``training.hyperparams``),
including files written before an option existed (the option takes its default).
It lives beside the encoder, not in `mmkg.training`, because what the heads never trained on (the hashed
`holdout_split`) is a property of the saved model that the benchmarks need too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from mmkg.errors import UserInputError


@dataclass(frozen=True)
class LitTrainConfig:
    """Head and optimiser hyperparameters of `mmkg.training.lit_train.train_lit`."""

    embed_dim: int = 512
    hidden: int = 2048
    depth: int = 2
    dropout: float = 0.5
    input_dropout: float = 0.3
    all_captions: bool = True
    """Every caption of a batch's images takes part in the loss (False: one at random)."""
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    init_temperature: float = 0.07
    hflip: bool = True
    """Train on horizontally flipped views of the images too."""
    holdout: int = 500
    """Training images set aside (by hashing) to choose the best epoch: see `holdout_split`."""
    eval_every: int = 2
    seed: int = 0
    """The first member's initialisation and batch order, and the holdout every member shares."""
    members: int = 2
    """Heads trained with seeds ``seed``, ``seed + 1``, ... and used as one ensemble (`LitEnsemble`): each
    more member costs one more training run and ``embed_dim`` more dimensions per vector."""
    multilingual: bool | None = None
    """Train the e5 text head (None: when the folder has ``captions.<lang>.jsonl``)."""
    ml_latin_captions: int = 0
    """The e5 head also learns from the first N Latin-script captions of each image (0: only from other
    scripts; e5's own cross-lingual alignment carries what it learns to languages without captions)."""

    @classmethod
    def create(cls, **overrides: Any) -> LitTrainConfig:
        """Defaults, then every override that is not None; an unknown name is a UserInputError."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserInputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_saved(cls, model_config: Mapping[str, Any]) -> LitTrainConfig:
        """The configuration a saved model was trained with (its config.json); options it predates take
        their defaults and names this version does not know are ignored."""
        saved = (model_config.get("training") or {}).get("hyperparams") or {}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> LitTrainConfig:
        return dataclasses.replace(self, **changes)


DEFAULTS: Mapping[str, Any] = MappingProxyType(LitTrainConfig().as_dict())
"""The default configuration by name, read-only (for callers that look options up by name)."""


def holdout_split(keys: Sequence[str], holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed slice of the training images for model selection, chosen by hashing (order-free)."""
    n = len(keys)
    holdout = min(holdout, n // 5)
    ranks = np.argsort([hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in keys], kind="stable")
    ho = np.sort(ranks[:holdout])
    fit = np.sort(ranks[holdout:])
    return fit, ho
