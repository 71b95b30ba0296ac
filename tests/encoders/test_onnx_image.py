"""The image tower on ONNX Runtime: the same features as torch, one cached export, a damaged file exported again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmkg.encoders.backbones import ImageTower
from mmkg.errors import UserInputError
from mmkg.settings import Settings

DATA = Path(os.environ.get("MMKG_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
FASHION = DATA / "fashion" / "images"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def towers(cache: Path) -> tuple[ImageTower, ImageTower]:
    return ImageTower(runtime="torch"), ImageTower(runtime="onnx", cache_dir=cache)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    files = sorted(FASHION.glob("*.jpg"))[:12]
    if files:
        return [Image.open(f).convert("RGB") for f in files]
    rng = np.random.default_rng(0)  # no shared data: varied synthetic pictures, odd sizes included
    return [Image.fromarray(rng.integers(0, 256, (200 + 17 * i, 300, 3), dtype=np.uint8)) for i in range(12)]


def test_onnx_features_equal_torch(towers: tuple[ImageTower, ImageTower], images: list[Image.Image]) -> None:
    eager, onnx = towers
    assert (eager.runtime, onnx.runtime) == ("torch", "onnx")
    a, b = eager.features(images, batch_size=5), onnx.features(images, batch_size=5)
    assert b.shape == (len(images), 1280) and b.dtype == np.float32
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.99999
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    # The threaded path (ingest) and the locked one give the same rows; one thread or two.
    with_one = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        np.testing.assert_allclose(onnx.batch_features(images[:5]), b[:5], rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(with_one)


def test_onnx_classify_agrees(towers: tuple[ImageTower, ImageTower], images: list[Image.Image]) -> None:
    eager, onnx = towers
    for a, b in zip(eager.classify(images[:4], top_k=3), onnx.classify(images[:4], top_k=3), strict=True):
        assert a[0][0] == b[0][0]
        assert abs(a[0][1] - b[0][1]) < 1e-4


def test_export_is_cached_and_a_damaged_file_is_redone(
    towers: tuple[ImageTower, ImageTower], cache: Path, images: list[Image.Image]
) -> None:
    onnx = towers[1]
    assert onnx.onnx is not None
    path = onnx.onnx.path
    assert path.parent == cache and path.is_file()
    stamp = path.stat().st_mtime_ns
    again = ImageTower(runtime="onnx", cache_dir=cache)
    assert again.onnx is not None and again.onnx.path == path and path.stat().st_mtime_ns == stamp  # no new export
    path.write_bytes(b"not a model")
    redone = ImageTower(runtime="onnx", cache_dir=cache)
    np.testing.assert_allclose(redone.features(images[:3]), onnx.features(images[:3]), rtol=1e-5, atol=1e-5)


def test_runtime_is_checked() -> None:
    with pytest.raises(UserInputError, match="image runtime"):
        Settings.load(image_runtime="tensorrt")
    with pytest.raises(ValueError, match="image runtime"):
        ImageTower(runtime="tensorrt")
