"""The `lit` backend (locked-image tuning, Zhai et al. 2022): frozen towers + trained projection heads.

Images go through frozen EfficientNet-Lite0, texts through frozen all-MiniLM-L6-v2
(`mmkg.encoders.backbones`); two small heads, trained contrastively by `mmkg.encoders.lit_train`,
map both into one shared L2-normalised space.

The trained model lives in ``<workspace>/models/lit/``:

* ``config.json`` — backbones, feature names and dims, preprocessing, head architecture, the
  learned temperature, the training summary, and the name and sha256 of the weights file. It is
  written last (atomically), so it always names a complete weights file.
* ``heads-<sha12>.pt`` — the heads' ``state_dict`` (a plain tensor dict, loaded with
  ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmkg.encoders.backbones import (
    IMAGE_BACKBONE,
    IMAGE_FEATURE,
    IMAGE_MEAN,
    IMAGE_SIZE,
    IMAGE_STD,
    TEXT_BACKBONE,
    TEXT_FEATURE,
    TEXT_MAX_TOKENS,
    ImageTower,
    TextTower,
    get_image_tower,
    get_text_tower,
    limit_threads,
)
from mmkg.encoders.base import Encoder, l2_normalize
from mmkg.errors import ModelNotReadyError
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
TRAIN_HINT = "run: mmkg train encoder --data ../shared/data/flickr8k/train"


def lit_model_dir(settings: Settings) -> Path:
    """Where `train_lit` saves and `create_encoder` finds the lit heads."""
    return Workspace(Path(settings.home)).models_dir / "lit"


# -- heads ---------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """Standardise the frozen feature, then a residual MLP into the shared space.

    ``y = W_skip z + MLP(z)``, with ``z = dropout_in((x - mean) / std)`` (statistics of the training
    features, stored as buffers). The linear skip keeps the head at least as good as a linear probe;
    the MLP adds the non-linear part. Both dropouts act only in training: the frozen features of
    6,000 images are few, and without them the heads overfit within a few epochs.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int, depth: int = 2, dropout: float = 0.5, input_dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.input_dropout = nn.Dropout(input_dropout)
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(max(0, depth - 1)):
            layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.mlp = nn.Sequential(*layers)
        self.skip = nn.Linear(in_dim, out_dim, bias=False) if depth > 1 else None

    def set_input_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.input_dropout((x - self.mean) / self.std)
        y = self.mlp(z)
        if self.skip is not None:
            y = y + self.skip(z)
        return y


class LitHeads(nn.Module):
    """The trainable part: an image head, a text head and the temperature of the contrastive loss."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        embed_dim: int = 512,
        hidden: int = 2048,
        depth: int = 2,
        dropout: float = 0.5,
        input_dropout: float = 0.3,
        init_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.image = ProjectionHead(image_dim, embed_dim, hidden, depth, dropout, input_dropout)
        self.text = ProjectionHead(text_dim, embed_dim, hidden, depth, dropout, input_dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().exp().clamp(max=100.0))

    def embed_images(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(feats), dim=-1)

    def embed_texts(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(feats), dim=-1)

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> LitHeads:
        return cls(
            image_dim=int(arch["image_dim"]),
            text_dim=int(arch["text_dim"]),
            embed_dim=int(arch["embed_dim"]),
            hidden=int(arch["hidden"]),
            depth=int(arch["depth"]),
            dropout=float(arch.get("dropout", 0.0)),
            input_dropout=float(arch.get("input_dropout", 0.0)),
        )


def save_lit_model(model_dir: Path, heads: LitHeads, arch: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Write the weights (content-addressed) then config.json (the commit point); drop stale weights."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    torch.save(state, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    weights_name = f"heads-{digest[:12]}.pt"
    atomic_write_bytes(model_dir / weights_name, data)
    config = {
        "format": FORMAT_VERSION,
        "backend": "lit",
        "weights": weights_name,
        "weights_sha256": digest,
        "image_backbone": IMAGE_BACKBONE,
        "image_feature": IMAGE_FEATURE,
        "text_backbone": TEXT_BACKBONE,
        "text_feature": TEXT_FEATURE,
        "preprocessing": {
            "image": {
                "resize_shorter": IMAGE_SIZE,
                "center_crop": IMAGE_SIZE,
                "interpolation": "bicubic",
                "scale": f"(pixel - {IMAGE_MEAN}) / {IMAGE_STD}",
                "pooling": "global average of the last 1280-channel map",
            },
            "text": {"pooling": "attention-masked mean, L2-normalised", "max_tokens": TEXT_MAX_TOKENS},
        },
        "arch": arch,
        "temperature": heads.temperature,
        "training": summary,
    }
    atomic_write_json(model_dir / CONFIG_NAME, config)
    for stale in model_dir.glob("heads-*.pt"):
        if stale.name != weights_name:
            stale.unlink(missing_ok=True)
    return model_dir / CONFIG_NAME


def load_lit_heads(model_dir: Path) -> tuple[LitHeads, dict[str, Any]]:
    """The trained heads and their config; ModelNotReadyError (with the command to run) if absent."""
    config_path = model_dir / CONFIG_NAME
    if not config_path.is_file():
        raise ModelNotReadyError(f"the lit encoder has no trained heads in {model_dir}; {TRAIN_HINT}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        weights_path = model_dir / config["weights"]
        data = weights_path.read_bytes()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotReadyError(f"the lit heads in {model_dir} are unreadable ({exc}); {TRAIN_HINT}") from exc
    if hashlib.sha256(data).hexdigest() != config.get("weights_sha256"):
        raise ModelNotReadyError(f"the lit heads in {model_dir} are corrupt (checksum mismatch); {TRAIN_HINT}")
    if config.get("image_feature") != IMAGE_FEATURE or config.get("text_feature") != TEXT_FEATURE:
        raise ModelNotReadyError(
            f"the lit heads in {model_dir} were trained on other backbone features "
            f"({config.get('image_feature')}, {config.get('text_feature')}); {TRAIN_HINT}"
        )
    heads = LitHeads.from_arch(config["arch"])
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    heads.load_state_dict(state, strict=True)
    heads.eval()
    return heads, config


# -- encoder -------------------------------------------------------------------------------------


class LitEncoder(Encoder):
    """Frozen EfficientNet-Lite0 / MiniLM towers with trained heads; loads each tower on first use."""

    name = "lit"

    def __init__(self, model_dir: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir)
        self.heads, self.config = load_lit_heads(self.model_dir)
        self.dim = int(self.config["arch"]["embed_dim"])
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.heads.to(device)
        limit_threads()

    @classmethod
    def from_settings(cls, settings: Settings) -> LitEncoder:
        return cls(lit_model_dir(settings), device=settings.device, batch_size=settings.batch_size)

    @property
    def fingerprint(self) -> str:
        return f"lit:{self.config['weights_sha256'][:16]}"

    @property
    def image_tower(self) -> ImageTower:
        return get_image_tower(self.device)

    @property
    def text_tower(self) -> TextTower:
        return get_text_tower(self.device)

    def project_image_features(self, feats: np.ndarray) -> np.ndarray:
        """Frozen image features (n, 1280) -> unit vectors (n, dim)."""
        return self._project(self.heads.embed_images, feats)

    def project_text_features(self, feats: np.ndarray) -> np.ndarray:
        """Frozen text features (n, 384) -> unit vectors (n, dim)."""
        return self._project(self.heads.embed_texts, feats)

    def _project(self, fn: Any, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            out = fn(torch.from_numpy(np.ascontiguousarray(feats)).to(self.device)).float().cpu().numpy()
        return l2_normalize(out)

    def encode_images(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.image_tower.features(list(images), batch_size=self.batch_size, progress=progress)
        return self.project_image_features(feats)

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.text_tower.features(list(texts), batch_size=max(self.batch_size, 64), progress=progress)
        return self.project_text_features(feats)
