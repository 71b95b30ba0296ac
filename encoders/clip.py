"""The `clip` backend: a transformers `CLIPModel` (or `ChineseCLIPModel`) by hub name or local directory.

The directory (or hub repository) must hold the model, its tokenizer and its image processor
(what ``save_pretrained`` writes for each). A hub name is looked up in the local Hugging Face
cache first; only if it is not there, and the settings are not offline (``HF_HUB_OFFLINE``), is the hub asked. Any
failure to load becomes one `ModelNotReadyError` that says what to do instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mmkg.encoders.backbones import MAX_THREADS, PROGRESS_MIN_ITEMS, batched, limit_threads
from mmkg.encoders.base import Encoder, l2_normalize
from mmkg.encoders.hub import HubAccess
from mmkg.errors import ModelNotReadyError

log = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else with a slash (or ./ ~ prefixes) is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _features(out: Any) -> torch.Tensor:
    """`get_*_features` returns a tensor in transformers 4 and a model output (projected pooler) in 5."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected output from the CLIP model: {type(out).__name__}")
    return pooled


class ClipEncoder(Encoder):
    """CLIP image and text towers with their own projections; rows L2-normalised, float32."""

    name = "clip"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_CLIP_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int = MAX_THREADS,
        hub: HubAccess | None = None,
    ) -> None:
        self.model_name = str(model)
        self.hub = hub or HubAccess()
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        limit_threads(threads)
        self._lock = threading.Lock()
        self.model, self.tokenizer, self.image_processor, self._source = self._load(self.model_name)
        self.model.to(self.device)
        self.model.eval()
        config = self.model.config
        self.dim = int(config.projection_dim)
        text_config = getattr(config, "text_config", None)
        self.max_tokens = int(getattr(text_config, "max_position_embeddings", 77) or 77)
        self._fingerprint = self._make_fingerprint()

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, name: str) -> tuple[Any, Any, Any, str]:
        # transformers is slow to import: loaded with the first model
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, ChineseCLIPModel, CLIPModel

        expanded = Path(name).expanduser()
        if expanded.is_dir():
            source, attempts = str(expanded), [True]
        elif _looks_like_path(name):
            raise ModelNotReadyError(f"CLIP model directory not found: {name}")
        else:
            source, attempts = name, ([True] if self.hub.offline else [True, False])
        last: Exception | None = None
        for local_only in attempts:
            if not local_only and not self.hub.reachable():
                last = last or ConnectionError("the Hugging Face hub is unreachable")
                break
            try:
                config = AutoConfig.from_pretrained(source, local_files_only=local_only)
                if config.model_type == "clip":
                    model_cls: Any = CLIPModel
                elif config.model_type == "chinese_clip":
                    model_cls = ChineseCLIPModel
                else:
                    raise ModelNotReadyError(
                        f"{name} is a {config.model_type!r} model, not CLIP: set MMKG_CLIP_MODEL to a CLIP model"
                    )
                model = model_cls.from_pretrained(source, local_files_only=local_only)
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
                processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
                log.info("loaded CLIP model %s", source)
                return model, tokenizer, processor, source
            except ModelNotReadyError:
                raise
            except Exception as exc:  # noqa: BLE001 - every loading failure becomes one clear error
                last = exc
                log.debug("loading %s (local_files_only=%s) failed: %s", source, local_only, exc)
        hint = (
            "the hub is unreachable or the model is not in the local cache; give a local directory "
            "(MMKG_CLIP_MODEL=/path/to/saved/model) or use the offline encoder (MMKG_ENCODER=lit)"
        )
        if expanded.is_dir():
            hint = "the directory must hold a CLIP model, its tokenizer and its image processor (save_pretrained)"
        raise ModelNotReadyError(f"cannot load CLIP model {name!r}: {hint} ({type(last).__name__}: {last})") from last

    def _make_fingerprint(self) -> str:
        h = hashlib.sha256(self.model_name.encode())
        h.update(self.model.config.to_json_string().encode())
        src = Path(self._source)
        if src.is_dir():
            for f in sorted(src.glob("*.safetensors")) + sorted(src.glob("*.bin")):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(str(getattr(self.model.config, "_commit_hash", "")).encode())
        return f"clip:{self.model_name}:{h.hexdigest()[:12]}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    # -- encoding --------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray:
        def features(chunk: Sequence[Image.Image]) -> torch.Tensor:
            rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in chunk]
            pixels = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)
            return _features(self.model.get_image_features(pixel_values=pixels))

        return self._encode(list(images), features, progress, "CLIP images", "img")

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")

        def features(chunk: Sequence[str]) -> torch.Tensor:
            enc = self.tokenizer(
                list(chunk), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(self.device)
            return _features(self.model.get_text_features(**enc))

        return self._encode(list(texts), features, progress, "CLIP texts", "text")

    def _encode(
        self, items: list[Any], features: Callable[[Sequence[Any]], torch.Tensor], progress: bool, desc: str, unit: str
    ) -> np.ndarray:
        """`features` of `items` batch by batch, under the model's lock; rows L2-normalised, float32."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        show = progress and len(items) >= PROGRESS_MIN_ITEMS
        with (
            self._lock,
            torch.inference_mode(),
            tqdm(total=len(items), desc=desc, unit=unit, disable=not show) as bar,
        ):
            for start, chunk in batched(items, self.batch_size):
                out[start : start + len(chunk)] = features(chunk).float().cpu().numpy()
                bar.update(len(chunk))
        return l2_normalize(out)
