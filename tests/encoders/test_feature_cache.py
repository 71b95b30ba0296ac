"""The crash-safe feature cache: persistence, compaction, and survival of damaged or partial chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmkg.encoders.feature_cache import FeatureCache, sha256_bytes, text_key


def _keys(n: int, prefix: str = "k") -> list[str]:
    return [sha256_bytes(f"{prefix}{i}".encode()) for i in range(n)]


def test_roundtrip_and_persistence(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = _keys(10)
    feats = rng.standard_normal((10, 8)).astype(np.float32)
    cache = FeatureCache(tmp_path, "backbone.v1/plain", 8)
    cache.put(keys[:6], feats[:6])
    cache.put(keys[6:], feats[6:])
    again = FeatureCache(tmp_path, "backbone.v1/plain", 8)  # a new process would see this
    got, found = again.lookup(keys + ["missing"])
    assert found.tolist() == [True] * 10 + [False]
    np.testing.assert_array_equal(got[:10], feats)
    assert (got[10] == 0).all()
    assert again.hits == 10 and again.misses == 1
    assert len(again) == 10


def test_namespaces_are_separate(tmp_path: Path) -> None:
    keys = _keys(3)
    FeatureCache(tmp_path, "b/plain", 4).put(keys, np.ones((3, 4), np.float32))
    _, found = FeatureCache(tmp_path, "b/hflip", 4).lookup(keys)
    assert not found.any()


def test_compaction_keeps_every_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cache = FeatureCache(tmp_path, "ns", 5)
    keys = _keys(40)
    feats = rng.standard_normal((40, 5)).astype(np.float32)
    for i in range(0, 40, 2):
        cache.put(keys[i : i + 2], feats[i : i + 2])
    assert len(list(cache.dir.glob("chunk-*.npz"))) == 20
    cache.compact(force=True)
    assert len(list(cache.dir.glob("chunk-*.npz"))) == 1
    got, found = FeatureCache(tmp_path, "ns", 5).lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(got, feats)


def test_damaged_chunks_and_leftover_temp_files_are_ignored(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "ns", 3)
    keys = _keys(4)
    cache.put(keys[:2], np.ones((2, 3), np.float32))
    # What a crash could leave: a half-written temp file (never renamed) and a damaged chunk.
    (cache.dir / ".chunk-dead.npz.abc.tmp").write_bytes(b"PK\x03\x04 partial")
    (cache.dir / "chunk-damaged.npz").write_bytes(b"not a zip at all")
    fresh = FeatureCache(tmp_path, "ns", 3)
    _, found = fresh.lookup(keys)
    assert found.tolist() == [True, True, False, False]
    fresh.put(keys[2:], np.zeros((2, 3), np.float32))  # recompute and append the rest
    _, found = FeatureCache(tmp_path, "ns", 3).lookup(keys)
    assert found.all()


def test_wrong_dim_chunk_is_ignored_and_bad_put_refused(tmp_path: Path) -> None:
    FeatureCache(tmp_path, "ns", 3).put(_keys(2), np.ones((2, 3), np.float32))
    _, found = FeatureCache(tmp_path, "ns", 4).lookup(_keys(2))
    assert not found.any()
    with pytest.raises(ValueError):
        FeatureCache(tmp_path, "ns", 3).put(_keys(2), np.ones((3, 3), np.float32))


def test_text_key_is_content_hash() -> None:
    assert text_key("a dog") == text_key("a dog")
    assert text_key("a dog") != text_key("a dog ")
    assert len(text_key("x")) == 64
