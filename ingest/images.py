"""Safe image loading: every way an image can be bad becomes a BadImageError with a clear reason."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from mmkg.errors import BadImageError

pillow_heif.register_heif_opener()  # HEIC / HEIF: what a phone camera saves by default

JPEG_SCALES = (2, 4, 8)
"""The reductions a JPEG decoder makes while decoding (DCT scaling), at the memory and time of the smaller image."""


def resolve_inside(root: Path, relative: str | os.PathLike[str]) -> Path:
    """The path `relative` under `root`, refusing anything that resolves outside it (`../../etc/passwd`)."""
    root_resolved = root.resolve()
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved):
        if Path(os.path.normpath(root_resolved / relative)).is_relative_to(root_resolved):
            raise BadImageError(f"path leaves the collection folder through a symbolic link: {relative} -> "
                                f"{candidate} (ingest the folder the link points to, or copy the files in)")
        raise BadImageError(f"path leaves the collection folder: {relative}")
    return candidate


def read_image_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise BadImageError(f"image file not found: {path}") from exc
    except OSError as exc:
        raise BadImageError(f"image file unreadable: {path}: {exc.strerror}") from exc
    if not path.is_file():
        raise BadImageError(f"not a regular file: {path}")
    if size == 0:
        raise BadImageError(f"empty image file: {path}")
    if size > max_bytes:
        raise BadImageError(f"image file too large ({size} bytes > {max_bytes}): {path}")
    return path.read_bytes()


def decode_image(data: bytes, max_pixels: int, name: str = "image") -> Image.Image:
    """Decode fully (so truncation is caught now, not later), upright and in RGB.

    A phone stores a portrait photo sideways with an EXIF orientation that viewers apply; the encoders must see it
    as a person does. A JPEG over `max_pixels` (a 48-108 megapixel camera photo) is decoded at the smallest of
    1/2, 1/4 or 1/8 scale that fits, which the decoder does without holding the full image; any other image over
    it is refused before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is the one that counts
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > max_pixels and probe.format in ("JPEG", "MPO"):  # MPO: a JPEG with a depth map
                    scale = next((s for s in JPEG_SCALES if -(-width // s) * -(-height // s) <= max_pixels), 0)
                    if scale:
                        probe.draft(probe.mode, (width // scale, height // scale))  # the decoder rounds up
                if probe.size[0] * probe.size[1] > max_pixels:
                    raise BadImageError(f"image too large ({width}x{height} pixels > {max_pixels}): {name}")
                probe.load()
                return ImageOps.exif_transpose(probe).convert("RGB")
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"image too large ({exc}): {name}") from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(f"not an image file: {name}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"corrupt image ({exc}): {name}") from exc


def load_image(path: Path, max_bytes: int = 50_000_000, max_pixels: int = 40_000_000) -> tuple[Image.Image, bytes]:
    """The decoded RGB image and its raw bytes (the bytes give the image its id)."""
    data = read_image_bytes(path, max_bytes)
    return decode_image(data, max_pixels, name=str(path)), data


def check_image_paths(root: Path, relatives: Sequence[str]) -> tuple[tuple[Path, ...], list[str]]:
    """Resolve paths written in a source file: the usable ones (inside `root`, existing files, no repeats)
    and one readable problem per refused path. Decoding is left to `load_image`."""
    paths: dict[Path, None] = {}
    problems: list[str] = []
    for relative in relatives:
        if not relative or not relative.strip():
            problems.append("empty image path")
            continue
        try:
            path = resolve_inside(root, relative.strip())
        except BadImageError as exc:
            problems.append(str(exc))
            continue
        except (OSError, ValueError) as exc:  # NUL bytes, names too long, symlink loops
            problems.append(f"invalid image path {relative!r}: {exc}")
            continue
        if not path.is_file():
            problems.append(f"image file not found: {relative}" if not path.exists() else f"not a file: {relative}")
            continue
        paths[path] = None
    return tuple(paths), problems
