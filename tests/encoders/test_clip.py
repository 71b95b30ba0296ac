"""The clip backend, offline: a tiny random CLIPModel saved with its tokenizer and image processor,
then loaded by path through the same code (and the same factory) a user runs."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkg.encoders.clip import ClipEncoder
from mmkg.encoders.factory import clear_encoder_cache, create_encoder
from mmkg.errors import ModelNotReadyError
from mmkg.settings import Settings

SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def _tiny_tokenizer():  # type: ignore[no-untyped-def]
    """A real CLIPTokenizer over a character vocabulary (no merges): every ASCII word tokenises."""
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {}
    for tok in SPECIALS + [c for c in chars] + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[]), len(vocab)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer, vocab_size = _tiny_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    out = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (32, 32), (64, 48), (50, 70)]
    return [
        Image.fromarray(rng.integers(0, 255, (sizes[i % 4][1], sizes[i % 4][0], 3), dtype=np.uint8)) for i in range(n)
    ]


TEXTS = [
    "a dog runs on the beach",
    "two children play football",
    "a red car",
    "",
    "x" * 400,
    "Snow, mountains & skiers!",
]


def _check_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_loads_by_path_and_encodes(tiny_clip_dir: Path) -> None:
    enc = ClipEncoder(str(tiny_clip_dir), batch_size=4)
    assert enc.dim == 24
    imgs = enc.encode_images(_images(6))
    txts = enc.encode_texts(TEXTS)
    _check_unit_rows(imgs, 6, 24)
    _check_unit_rows(txts, len(TEXTS), 24)
    assert enc.fingerprint.startswith("clip:")
    # distinct inputs give distinct vectors (the model really ran)
    assert np.abs(imgs[0] - imgs[1]).max() > 1e-4
    assert np.abs(txts[0] - txts[1]).max() > 1e-4


def test_deterministic_and_batch_invariant(tiny_clip_dir: Path) -> None:
    a = ClipEncoder(str(tiny_clip_dir), batch_size=1)
    b = ClipEncoder(str(tiny_clip_dir), batch_size=5)
    images = _images(7, seed=3)
    np.testing.assert_allclose(a.encode_images(images), b.encode_images(images), atol=1e-5)
    np.testing.assert_allclose(a.encode_texts(TEXTS), b.encode_texts(TEXTS), atol=1e-5)
    np.testing.assert_array_equal(b.encode_texts(TEXTS), b.encode_texts(TEXTS))
    # one item alone equals the same item inside a batch
    np.testing.assert_allclose(b.encode_texts(TEXTS[:1])[0], b.encode_texts(TEXTS)[0], atol=1e-5)


def test_empty_inputs(tiny_clip_dir: Path) -> None:
    enc = ClipEncoder(str(tiny_clip_dir))
    assert enc.encode_images([]).shape == (0, 24)
    assert enc.encode_texts([]).shape == (0, 24)
    with pytest.raises(TypeError):
        enc.encode_texts("a single string")  # type: ignore[arg-type]


def test_factory_by_path_is_cached(tiny_clip_dir: Path, tmp_path: Path) -> None:
    clear_encoder_cache()
    settings = Settings.load(home=tmp_path, encoder="clip", clip_model=str(tiny_clip_dir))
    first = create_encoder(settings)
    assert isinstance(first, ClipEncoder)
    assert create_encoder(settings) is first
    clear_encoder_cache()


def test_missing_directory_is_model_not_ready(tmp_path: Path) -> None:
    with pytest.raises(ModelNotReadyError, match="not found"):
        ClipEncoder(str(tmp_path / "no" / "such" / "model"))


def test_directory_without_model_is_model_not_ready(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotReadyError, match="cannot load CLIP model"):
        ClipEncoder(str(tmp_path / "empty"))


def test_unreachable_hub_is_model_not_ready(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Offline, with an empty Hugging Face cache: the hub name cannot be resolved anywhere.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    clear_encoder_cache()
    settings = Settings.load(home=tmp_path, encoder="clip", clip_model="openai/clip-vit-base-patch32")
    with pytest.raises(ModelNotReadyError, match="MMKG_ENCODER=lit"):
        create_encoder(settings)
