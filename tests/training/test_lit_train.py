"""The lit backend with its real frozen towers: heads trained for a few steps on 20 Flickr images."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmkg.encoders.backbones import get_image_tower, get_text_tower
from mmkg.encoders.factory import clear_encoder_cache, create_encoder
from mmkg.encoders.lit import TEXT, LitEncoder, LitEnsemble, LitHeads, lit_model_dir, mean_of_views
from mmkg.errors import ModelNotReadyError, UserInputError
from mmkg.ingest.images import load_image
from mmkg.settings import Settings
from mmkg.training.captions import read_caption_pairs
from mmkg.training.features import cached_image_features
from mmkg.training.lit_train import train_lit

DATA = Path(os.environ.get("MMKG_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
FLICKR_TRAIN = DATA / "flickr8k" / "train"

pytestmark = pytest.mark.skipif(
    not (FLICKR_TRAIN / "captions.jsonl").is_file(), reason=f"Flickr8k not found under {DATA}"
)

N_IMAGES = 20
FAST = {"max_images": N_IMAGES, "epochs": 3, "batch_size": 8, "hidden": 64, "embed_dim": 32, "progress": False}


def _settings(home: Path, **kw: Any) -> Settings:
    return Settings.load(home=home, encoder="lit", **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    home = tmp_path_factory.mktemp("lit-ws")
    settings = _settings(home)
    summary = train_lit(FLICKR_TRAIN, settings, **FAST)
    return settings, summary


@pytest.fixture(scope="module")
def images() -> list[Any]:
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=9)
    return [load_image(p)[0] for p in pairs.paths]


def test_weights_really_load_and_classify_sensibly() -> None:
    # Training image 0 shows two dogs in the snow: ImageNet classes 151-268 are dog breeds.
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=5)
    dog_images = [load_image(pairs.paths[i])[0] for i in (0, 3, 4)]
    for top in get_image_tower().classify(dog_images, top_k=5):
        assert any(151 <= idx <= 268 for idx, _ in top), top


def test_missing_heads_raise_model_not_ready(tmp_path: Path) -> None:
    clear_encoder_cache()
    with pytest.raises(ModelNotReadyError, match="mmkg train encoder --data"):
        create_encoder(_settings(tmp_path / "empty-ws"))


def test_training_summary_and_saved_files(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, summary = trained
    assert summary["images"] == N_IMAGES
    assert summary["pairs"] == 5 * N_IMAGES
    assert summary["epochs"] == 3
    assert np.isfinite(summary["final_loss"])
    model_dir = lit_model_dir(settings)
    config = json.loads((model_dir / "config.json").read_text())
    assert (model_dir / config["weights"]).is_file()
    assert config["image_backbone"] == "efficientnet-lite0"
    assert config["text_backbone"] == "all-MiniLM-L6-v2"
    assert config["arch"]["embed_dim"] == 32
    assert 0 < config["temperature"] < 1
    assert config["training"]["pairs"] == 5 * N_IMAGES
    assert list(model_dir.glob("*.tmp")) == []


def test_encoder_shapes_norms_dtype(trained: tuple[Settings, dict[str, Any]], images: list[Any]) -> None:
    settings, _ = trained
    clear_encoder_cache()
    enc = create_encoder(settings)
    assert isinstance(enc, LitEncoder)
    dim = 2 * 32  # two members (the default) of 32 dimensions, side by side
    assert enc.dim == dim and enc.fingerprint.startswith("lit:")
    assert create_encoder(settings) is enc  # loaded once per process
    img = enc.encode_images(images)
    txt = enc.encode_texts(["a dog runs in the snow", "a child plays croquet", ""])
    for x, n in ((img, len(images)), (txt, 3)):
        assert x.shape == (n, dim) and x.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert enc.encode_images([]).shape == (0, dim)
    assert enc.encode_texts([]).shape == (0, dim)


def test_an_ensemble_scores_the_mean_of_its_members(
    trained: tuple[Settings, dict[str, Any]], images: list[Any]
) -> None:
    settings, summary = trained
    enc = LitEncoder(lit_model_dir(settings))
    assert isinstance(enc.heads, LitEnsemble) and len(enc.heads.member_heads) == 2
    assert [m["seed"] for m in summary["members"]] == [0, 1]
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=len(images))
    feats, _, _ = cached_image_features(pairs.paths, settings, enc.image_views, progress=False)
    texts = ["a dog runs in the snow", "a child plays croquet"]
    cosines = enc.encode_texts(texts) @ enc.encode_images(images).T
    text_feats = torch.from_numpy(enc.text_features(TEXT, texts))
    image_feats = torch.from_numpy(mean_of_views(feats, enc.image_views))
    with torch.inference_mode():
        per_member = [
            (m.embed_texts(text_feats) @ m.embed_images(image_feats).T).numpy() for m in enc.heads.member_heads
        ]
    assert not np.allclose(per_member[0], per_member[1], atol=1e-3)  # two seeds, two different models
    np.testing.assert_allclose(cosines, (per_member[0] + per_member[1]) / 2, atol=1e-4)


def test_one_member_saves_plain_heads(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "ws")
    summary = train_lit(FLICKR_TRAIN, settings, **{**FAST, "epochs": 1, "members": 1})
    config = json.loads((lit_model_dir(settings) / "config.json").read_text())
    assert "members" not in config["arch"] and len(summary["members"]) == 1
    enc = LitEncoder(lit_model_dir(settings))
    assert isinstance(enc.heads, LitHeads) and enc.dim == 32


def test_a_model_saved_before_views_embeds_the_plain_image(tmp_path: Path, images: list[Any]) -> None:
    settings = _settings(tmp_path / "ws")
    train_lit(FLICKR_TRAIN, settings, **{**FAST, "epochs": 1, "members": 1})
    config_path = lit_model_dir(settings) / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("image_views")  # the format written before views were averaged
    config_path.write_text(json.dumps(config))
    enc = LitEncoder(lit_model_dir(settings))
    assert enc.image_views == ("plain",)
    plain = enc.image_tower.features(images, view="plain")
    np.testing.assert_allclose(enc.encode_images(images), enc.project_image_features(plain), atol=1e-5)
    with pytest.raises(UserInputError, match="members"):
        train_lit(FLICKR_TRAIN, settings, **{**FAST, "members": 0})


def test_batching_invariance_and_determinism(trained: tuple[Settings, dict[str, Any]], images: list[Any]) -> None:
    settings, _ = trained
    model_dir = lit_model_dir(settings)
    one = LitEncoder(model_dir, batch_size=1)
    many = LitEncoder(model_dir, batch_size=4)
    np.testing.assert_allclose(one.encode_images(images), many.encode_images(images), atol=1e-4)
    texts = [c for caps in read_caption_pairs(FLICKR_TRAIN, max_images=4).captions for c in caps]
    np.testing.assert_allclose(one.encode_texts(texts), many.encode_texts(texts), atol=1e-4)
    np.testing.assert_array_equal(many.encode_texts(texts), many.encode_texts(texts))


def test_live_encoding_matches_cached_features(trained: tuple[Settings, dict[str, Any]], images: list[Any]) -> None:
    """What training saw (cache) and what a user's query sees (live) are the same vectors."""
    settings, _ = trained
    enc = LitEncoder(lit_model_dir(settings))
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=len(images))
    assert enc.image_views == ("plain", "hflip")  # trained on both views, so embedded as their mean
    feats, ok, _ = cached_image_features(pairs.paths, settings, enc.image_views, progress=False)
    assert ok == list(range(len(images)))
    cached = enc.project_image_features(mean_of_views(feats, enc.image_views))
    np.testing.assert_allclose(cached, enc.encode_images(images), atol=1e-4)


def test_retraining_hits_the_feature_cache(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, _ = trained
    image_tower, text_tower = get_image_tower(settings.device), get_text_tower(settings.device)
    before = (image_tower.items, text_tower.items)
    summary = train_lit(FLICKR_TRAIN, settings, **{**FAST, "epochs": 1, "seed": 1})
    assert (image_tower.items, text_tower.items) == before  # nothing re-encoded
    assert summary["pairs"] == 5 * N_IMAGES
    # The factory sees the new heads: a new encoder object with a new fingerprint.
    clear_encoder_cache()
    enc = create_encoder(settings)
    config = json.loads((lit_model_dir(settings) / "config.json").read_text())
    assert enc.fingerprint == f"lit:{config['weights_sha256'][:16]}"


def test_new_images_are_encoded_once_per_view(trained: tuple[Settings, dict[str, Any]], tmp_path: Path) -> None:
    # A fresh workspace with 3 images: 3 images x 2 views go through the backbone, then never again.
    settings = _settings(tmp_path / "ws")
    tower = get_image_tower(settings.device)
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=3)
    start = tower.items
    cached_image_features(pairs.paths, settings, ("plain", "hflip"), progress=False)
    assert tower.items - start == 6
    cached_image_features(pairs.paths, settings, ("plain", "hflip"), progress=False)
    assert tower.items - start == 6


def test_bad_images_are_skipped_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=6)
    lines = []
    for path, caps in zip(pairs.paths, pairs.captions, strict=True):
        (data / "images" / path.name).write_bytes(path.read_bytes())
        lines.append(json.dumps({"image": f"images/{path.name}", "captions": caps}))
    (data / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    lines.append(json.dumps({"image": "images/broken.jpg", "captions": ["a broken image"]}))
    lines.append(json.dumps({"image": "images/missing.jpg", "captions": ["a missing image"]}))
    lines.append(json.dumps({"image": "../../etc/passwd", "captions": ["outside the folder"]}))
    lines.append("{not json")
    (data / "captions.jsonl").write_text("\n".join(lines) + "\n")
    summary = train_lit(data, _settings(tmp_path / "ws"), **{**FAST, "max_images": None, "epochs": 1})
    assert summary["images"] == 6
    assert summary["skipped"] == 4


def test_unknown_option_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown training option"):
        train_lit(FLICKR_TRAIN, _settings(tmp_path), learning_rate=1.0)
    with pytest.raises(UserInputError, match="captions.jsonl"):
        train_lit(tmp_path / "nowhere", _settings(tmp_path))
