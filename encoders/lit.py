"""The `lit` backend (locked-image tuning, Zhai et al. 2022): frozen towers + trained projection heads.

Images go through frozen EfficientNet-Lite0, texts through frozen all-MiniLM-L6-v2
(`mmkg.encoders.backbones`); two small heads, trained contrastively by `mmkg.training.lit_train`,
map both into one shared L2-normalised space.

A multilingual model adds a third head (``text_ml``) on frozen multilingual-e5-small, trained on
the same images with captions in other languages (``captions.<lang>.jsonl``). Each text is routed
by its script (`text_towers`): Latin-script text to the towers ``routing["latin"]`` names (MiniLM,
which is better at English), every other script to ``routing["other"]`` (e5). A text with no
letters at all (digits, emoji, empty) counts as Latin. A model without ``text_ml`` (the format
before it) sends everything to MiniLM.

The trained model lives in ``<workspace>/models/lit/``:

* ``config.json`` — backbones, feature names and dims, preprocessing, head architecture, the
  learned temperature, the training summary, and the name and sha256 of the weights file. It is
  written last (atomically), so it always names a complete weights file.
* ``heads-<sha12>.pt`` — the heads' ``state_dict`` (a plain tensor dict, loaded with
  ``weights_only=True``).

An image is embedded as the mean of the frozen features of its views (``image_views`` in config.json:
the plain image and its mirror image for heads trained on both, the default; ``plain`` alone for models saved
before): a mirrored photo shows the same scene, and averaging the two views lifts flickr8k/dev R@1 by 0.5 to 2
points in both directions and both languages (README). It costs a second pass of the image tower.

A model trained with several members (``arch["members"]``, default 2: `LitTrainConfig.members`) is a
`LitEnsemble`: heads of consecutive seeds whose unit vectors sit side by side, so one cosine is the mean of
the members' cosines.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

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
    ML_TEXT_BACKBONE,
    ML_TEXT_FEATURE,
    TEXT_BACKBONE,
    TEXT_FEATURE,
    TEXT_MAX_TOKENS,
    ImageTower,
    TextTower,
    get_image_tower,
    get_ml_text_tower,
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

TEXT = "text"
"""The English text head, on MiniLM features."""
TEXT_ML = "text_ml"
"""The multilingual text head, on multilingual-e5-small features."""
TOWER_FEATURES = {TEXT: TEXT_FEATURE, TEXT_ML: ML_TEXT_FEATURE}
DEFAULT_ROUTING: dict[str, list[str]] = {"latin": [TEXT], "other": [TEXT_ML]}
"""Which text heads embed a text, by its script; several heads' unit vectors are averaged."""

FeatureFn = Callable[[str, list[str]], np.ndarray]
"""(head name, texts) -> the frozen features that head takes: live towers or the feature cache."""


def is_latin_text(text: str) -> bool:
    """True when every letter of the text is Latin (or it has none): the texts MiniLM was trained on."""
    return all(_latin_letter(ch) for ch in text if ch.isalpha())


def _latin_letter(ch: str) -> bool:
    code = ord(ch)
    if code < 0x250 or 0x1E00 <= code < 0x1F00 or 0xFF21 <= code <= 0xFF5A:
        return True
    return unicodedata.name(ch, "").startswith("LATIN")


def text_towers(text: str, routing: dict[str, list[str]]) -> list[str]:
    """The text heads that embed this text under a model's routing."""
    return routing["latin"] if is_latin_text(text) else routing["other"]


def mean_of_views(features: dict[str, np.ndarray], views: Sequence[str]) -> np.ndarray:
    """The feature an image is embedded from: the mean of its views' frozen features (training and evaluation
    read the views from the feature cache, the encoder from its live tower)."""
    if len(views) == 1:
        return features[views[0]]
    return np.mean([features[view] for view in views], axis=0, dtype=np.float32)


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
    """The trainable part: an image head, a text head (MiniLM), optionally a multilingual text head
    (e5), and the temperature of the contrastive loss."""

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
        ml_text_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image = ProjectionHead(image_dim, embed_dim, hidden, depth, dropout, input_dropout)
        self.text = ProjectionHead(text_dim, embed_dim, hidden, depth, dropout, input_dropout)
        self.text_ml = (
            ProjectionHead(ml_text_dim, embed_dim, hidden, depth, dropout, input_dropout) if ml_text_dim else None
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().exp().clamp(max=100.0))

    def embed_images(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(feats), dim=-1)

    def embed_texts(self, feats: torch.Tensor, head: str = TEXT) -> torch.Tensor:
        return F.normalize(self.text_head(head)(feats), dim=-1)

    def text_head(self, head: str) -> ProjectionHead:
        if head == TEXT:
            return self.text
        if head == TEXT_ML and self.text_ml is not None:
            return self.text_ml
        raise ValueError(f"this model has no text head {head!r}")

    @property
    def text_heads(self) -> list[str]:
        return [TEXT] if self.text_ml is None else [TEXT, TEXT_ML]

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> LitHeads:
        """One member's heads (an ensemble's ``arch`` describes each member)."""
        return cls(
            image_dim=int(arch["image_dim"]),
            text_dim=int(arch["text_dim"]),
            embed_dim=int(arch["embed_dim"]),
            hidden=int(arch["hidden"]),
            depth=int(arch["depth"]),
            dropout=float(arch.get("dropout", 0.0)),
            input_dropout=float(arch.get("input_dropout", 0.0)),
            ml_text_dim=int(arch["ml_text_dim"]) if arch.get("ml_text_dim") else None,
        )


class LitEnsemble(nn.Module):
    """Heads trained with different seeds, used as one encoder: each member's unit vector scaled by 1/sqrt(N)
    and concatenated. The result is a unit vector whose cosine with another is the mean of the members'
    cosines (score averaging), so FAISS, the graph and the ranker take it as any other embedding. On
    flickr8k/dev two seeds together score above the weaker seed in every measure and about level with the
    stronger, which changes from run to run (README): the ensemble takes the luck out of one training run."""

    def __init__(self, members: Sequence[LitHeads]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.embed_dim = sum(m.embed_dim for m in members)
        self._scale = 1.0 / math.sqrt(len(members))

    @property
    def member_heads(self) -> list[LitHeads]:
        return cast(list[LitHeads], list(self.members))

    @property
    def temperature(self) -> float:
        return float(np.mean([m.temperature for m in self.member_heads]))

    @property
    def text_heads(self) -> list[str]:
        return self.member_heads[0].text_heads

    def embed_images(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed_images(feats) for m in self.member_heads], dim=-1) * self._scale

    def embed_texts(self, feats: torch.Tensor, head: str = TEXT) -> torch.Tensor:
        return torch.cat([m.embed_texts(feats, head) for m in self.member_heads], dim=-1) * self._scale


LitModel = LitHeads | LitEnsemble
"""What a saved lit model loads as: one set of heads, or an ensemble of them."""


def heads_from_arch(arch: dict[str, Any]) -> LitModel:
    """The untrained model a saved ``arch`` describes (``members`` > 1: an ensemble)."""
    members = int(arch.get("members", 1))
    if members <= 1:
        return LitHeads.from_arch(arch)
    return LitEnsemble([LitHeads.from_arch(arch) for _ in range(members)])


def embed_texts_routed(
    heads: LitModel, routing: dict[str, list[str]], texts: Sequence[str], features: FeatureFn
) -> np.ndarray:
    """Unit vectors of texts, each through the head(s) its script routes it to (the mean of their unit
    vectors, re-normalised, when several). Training's evaluation and the encoder share this code."""
    out = np.zeros((len(texts), heads.embed_dim), dtype=np.float32)
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        for head in text_towers(text, routing):
            groups.setdefault(head, []).append(i)
    param = next(heads.parameters())
    for head, rows in groups.items():
        feats = np.ascontiguousarray(features(head, [texts[i] for i in rows]), dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(feats).to(param.device)
            out[np.asarray(rows)] += heads.embed_texts(x, head).float().cpu().numpy()
    return l2_normalize(out)


def model_image_views(config: dict[str, Any]) -> tuple[str, ...]:
    """The views a saved model embeds an image as the mean of; a model saved before views were recorded: plain."""
    return tuple(config.get("image_views") or ("plain",))


def model_routing(config: dict[str, Any], heads: LitModel) -> dict[str, list[str]]:
    """The routing a saved model uses; a model without the multilingual head sends everything to MiniLM."""
    if TEXT_ML not in heads.text_heads:
        return {"latin": [TEXT], "other": [TEXT]}
    routing = config.get("routing") or DEFAULT_ROUTING
    return {"latin": list(routing["latin"]), "other": list(routing["other"])}


def save_lit_model(
    model_dir: Path,
    heads: LitModel,
    arch: dict[str, Any],
    summary: dict[str, Any],
    routing: dict[str, list[str]] | None = None,
    image_views: Sequence[str] = ("plain",),
) -> Path:
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
        "image_views": list(image_views),
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
            "text_ml": {"prefix": "query: ", "pooling": "mean, L2-normalised", "long_texts": "512-token windows"},
        },
        "text_heads": {
            head: {
                "backbone": TEXT_BACKBONE if head == TEXT else ML_TEXT_BACKBONE,
                "feature": TOWER_FEATURES[head],
            }
            for head in heads.text_heads
        },
        "routing": routing or (DEFAULT_ROUTING if TEXT_ML in heads.text_heads else {"latin": [TEXT], "other": [TEXT]}),
        "arch": arch,
        "temperature": heads.temperature,
        "training": summary,
    }
    atomic_write_json(model_dir / CONFIG_NAME, config)
    for stale in model_dir.glob("heads-*.pt"):
        if stale.name != weights_name:
            stale.unlink(missing_ok=True)
    return model_dir / CONFIG_NAME


def load_lit_heads(model_dir: Path) -> tuple[LitModel, dict[str, Any]]:
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
    ml_feature = (config.get("text_heads") or {}).get(TEXT_ML, {}).get("feature")
    if config["arch"].get("ml_text_dim") and ml_feature != ML_TEXT_FEATURE:
        raise ModelNotReadyError(
            f"the lit heads in {model_dir} were trained on another multilingual feature ({ml_feature}); {TRAIN_HINT}"
        )
    heads = heads_from_arch(config["arch"])
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    heads.load_state_dict(state, strict=True)
    heads.eval()
    return heads, config


# -- encoder -------------------------------------------------------------------------------------


class LitEncoder(Encoder):
    """Frozen EfficientNet-Lite0 / MiniLM (/ e5) towers with trained heads; loads each tower on first use."""

    name = "lit"

    def __init__(self, model_dir: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir)
        self.heads, self.config = load_lit_heads(self.model_dir)
        self.dim = self.heads.embed_dim
        self.routing = model_routing(self.config, self.heads)
        self.image_views = model_image_views(self.config)
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

    def text_features(self, head: str, texts: list[str], progress: bool = False) -> np.ndarray:
        """The frozen features the named text head takes, from its live tower."""
        if head == TEXT_ML:
            return get_ml_text_tower().features(texts, batch_size=64, progress=progress)
        return self.text_tower.features(texts, batch_size=max(self.batch_size, 64), progress=progress)

    def project_image_features(self, feats: np.ndarray) -> np.ndarray:
        """Frozen image features (n, 1280; the mean of the views: `image_features`) -> unit vectors (n, dim)."""
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

    def image_features(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray:
        """The frozen feature each image is embedded from: the mean of its views', from the live tower."""
        return self.image_tower.features(list(images), self.image_views, self.batch_size, progress)

    def batch_image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """`image_features` of one batch, without the tower's lock (ingest runs batches on several threads)."""
        return self.image_tower.batch_features(images, self.image_views)

    def encode_images(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.project_image_features(self.image_features(images, progress))

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return embed_texts_routed(
            self.heads, self.routing, list(texts), lambda head, group: self.text_features(head, group, progress)
        )
