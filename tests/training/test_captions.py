"""The caption pairs training reads: the ingest's Flickr reader, so both read a folder the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.training.captions import aligned_captions, extra_caption_files, read_caption_pairs


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(b"not decoded here")
    lines = [
        {"image": "images/a.jpg", "captions": ["a dog", " "]},
        {"image": "images/missing.jpg", "captions": ["gone"]},
        {"image": "../outside.jpg", "captions": ["escape"]},
        {"image": "images/b.jpg", "captions": []},
        {"image": "images/c.jpg", "captions": ["a cat", "a kitten"]},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n"
    (tmp_path / "captions.jsonl").write_text(text)
    (tmp_path / "captions.zh.jsonl").write_text(json.dumps({"image": "images/c.jpg", "captions": ["一只猫"]}) + "\n")
    return tmp_path


def test_pairs_keep_usable_lines_and_report_the_rest(tmp_path: Path) -> None:
    pairs = read_caption_pairs(_folder(tmp_path))
    assert [p.name for p in pairs.paths] == ["a.jpg", "c.jpg"]
    assert pairs.captions == [["a dog"], ["a cat", "a kitten"]]
    assert len(pairs.skipped) == 4  # missing image, outside the folder, no caption, not JSON
    assert [p.name for p in read_caption_pairs(tmp_path, max_images=1).paths] == ["a.jpg"]


def test_other_languages_align_by_image(tmp_path: Path) -> None:
    pairs = read_caption_pairs(_folder(tmp_path))
    assert extra_caption_files(tmp_path) == ["captions.zh.jsonl"]
    assert aligned_captions(tmp_path, "captions.zh.jsonl", pairs.paths) == [[], ["一只猫"]]


def test_a_csv_folder_reads_too(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "captions.csv").write_text("image,caption\nimages/a.jpg,a dog\nimages/a.jpg,a brown dog\n")
    pairs = read_caption_pairs(tmp_path, name="captions.csv")
    assert pairs.captions == [["a dog", "a brown dog"]]


def test_no_captions_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no captions.jsonl"):
        read_caption_pairs(tmp_path)
