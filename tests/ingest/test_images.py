"""Bad image files, each a real file on disk: every one is a BadImageError or a Skip with a clear reason."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest

from mmkg.errors import BadImageError
from mmkg.ingest.images import check_image_paths, load_image, resolve_inside


def png_bomb(path: Path, side: int = 20_000) -> None:
    """A valid 1-bit PNG of side x side pixels, all black: a few tens of kB that decode to 400 Mpixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_png_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    png_bomb(path)
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    with pytest.raises(BadImageError, match="too large"):
        load_image(path)
    assert time.perf_counter() - started < 5


def test_image_over_the_pixel_limit_is_refused(tmp_path: Path, data: Path) -> None:
    with pytest.raises(BadImageError, match=r"too large \(224x224 pixels > 1000\)"):
        load_image(next((data / "flickr8k" / "dev" / "images").glob("*.jpg")), max_pixels=1000)


def test_truncated_jpeg(tmp_path: Path, data: Path) -> None:
    real = next((data / "flickr8k" / "dev" / "images").glob("*.jpg")).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(real[: len(real) // 2])
    with pytest.raises(BadImageError, match="corrupt image"):
        load_image(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty image file"):
        load_image(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("just text, named like a photo")
    with pytest.raises(BadImageError, match="not an image file"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="image file not found"):
        load_image(tmp_path / "gone.jpg")


def test_good_image_loads(data: Path) -> None:
    image, raw = load_image(next((data / "flickr8k" / "dev" / "images").glob("*.jpg")))
    assert image.mode == "RGB" and image.size == (224, 224) and raw[:2] == b"\xff\xd8"


def test_path_leaving_the_folder(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="leaves the collection folder"):
        resolve_inside(tmp_path, "../../../etc/passwd")


def test_check_image_paths_reports_each_problem(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    paths, problems = check_image_paths(
        tmp_path, ["images/a.jpg", "./images/a.jpg", "../../../etc/passwd", "images/b.jpg", "images", "", "a\0b.jpg"]
    )
    assert paths == ((tmp_path / "images" / "a.jpg").resolve(),)
    assert problems[:4] == [
        "path leaves the collection folder: ../../../etc/passwd",
        "image file not found: images/b.jpg",
        "not a file: images",
        "empty image path",
    ]
    assert problems[4].startswith("invalid image path 'a\\x00b.jpg'")
