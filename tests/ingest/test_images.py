"""Bad image files, each a real file on disk: every one is a BadImageError or a Skip with a clear reason."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mmkg.errors import BadImageError
from mmkg.ingest.images import check_image_paths, load_image, resolve_inside

ORIENTATION = 0x0112
"""The EXIF tag a camera records which way is up in."""


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
    photo = next((data / "flickr8k" / "dev" / "images").glob("*.jpg"))
    with pytest.raises(BadImageError, match=r"too large \(224x224 pixels > 700\)"):
        load_image(photo, max_pixels=700)  # a JPEG that would not fit even at 1/8 scale: 28 x 28 = 784
    png = tmp_path / "photo.png"
    Image.open(photo).save(png)
    with pytest.raises(BadImageError, match=r"too large \(224x224 pixels > 1000\)"):
        load_image(png, max_pixels=1000)  # no decoder scaling for PNG: refused before decoding


def test_a_camera_jpeg_over_the_pixel_limit_is_decoded_at_a_smaller_scale(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    left_red_right_blue((2001, 1500)).save(path, quality=90)
    image, raw = load_image(path, max_pixels=1_000_000)  # 3 Mpixels: half scale fits
    assert image.mode == "RGB" and image.size == (1001, 750) and raw == path.read_bytes()
    assert_left_red_right_blue(image)
    image, _ = load_image(path, max_pixels=100_000)  # an eighth: 251 x 188
    assert image.size == (251, 188)


def test_a_phone_photo_is_decoded_upright(tmp_path: Path) -> None:
    """A phone stores a portrait photo sideways with EXIF orientation 6 (turn 90 degrees clockwise to show)."""
    upright = left_red_right_blue((300, 200))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    assert Image.open(path).size == (200, 300)
    image, _ = load_image(path)
    assert image.size == (300, 200)
    assert_left_red_right_blue(image)


def test_a_heic_photo_is_read(tmp_path: Path) -> None:
    path = tmp_path / "phone.heic"
    left_red_right_blue((320, 240)).save(path, format="HEIF", quality=90)
    assert path.read_bytes()[4:12] == b"ftypheic"
    image, _ = load_image(path)
    assert image.mode == "RGB" and image.size == (320, 240)
    assert_left_red_right_blue(image)


def left_red_right_blue(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 220))
    image.paste((220, 30, 30), (0, 0, size[0] // 2, size[1]))
    return image


def assert_left_red_right_blue(image: Image.Image) -> None:
    w, h = image.size
    left, right = image.getpixel((w // 4, h // 2)), image.getpixel((3 * w // 4, h // 2))
    assert left[0] > 180 and left[2] < 80, left
    assert right[2] > 180 and right[0] < 80, right


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
