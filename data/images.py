"""Opening images safely, and dropping the broken ones from a dataset before training starts.

PIL decodes lazily: `Image.open` reads only the header, and the pixels are decoded on first use. A truncated
JPEG therefore "opens" fine and fails later, in the middle of a training step, inside a DataLoader worker.
So the only real check is to decode the whole image (`img.load()` / `convert("RGB")`) inside the error
handling, which is what `load_image` does.

The problems met in practice, and what we call them in reports:
- "missing": the annotation names a file that is not there;
- "unreadable": not an image PIL understands (an HTML error page saved as .jpg, a zero-byte file, ...);
- "truncated": an interrupted download; PIL raises "image file is truncated" while decoding
  (unless someone set `ImageFile.LOAD_TRUNCATED_IMAGES = True`, which silently pads with grey);
- "decompression bomb": a small file declaring a huge image, built to exhaust memory. PIL warns
  (`DecompressionBombWarning`) above `Image.MAX_IMAGE_PIXELS` pixels and raises `DecompressionBombError`
  above twice that; we treat both as bad. We compare the size ourselves rather than turning the warning into
  an error with `warnings.catch_warnings`, which is not thread-safe and we decode in a thread pool.

`drop_bad_images` decodes every image of a record list in a thread pool (decoding releases the GIL), drops
the bad ones into the `LoadReport`, and refuses to go on when too many are bad: that usually means the wrong
folder or an unfinished download, which a user wants to hear about rather than train on a third of the data.

Decoding Flickr30k's 31,783 JPEGs takes minutes of CPU, at every start. So `load_dataset` keeps a record of the
images that decoded cleanly, `verified-images.json` in the cache folder: path -> [size in bytes, modification time
in ns]. An image whose file has not changed since is not decoded again; a new, changed or missing one is. The record
only ever saves work: if it cannot be read or written, every image is decoded as before.

Reference: Pillow docs, "Image.open" and "DecompressionBombWarning",
https://pillow.readthedocs.io/en/stable/reference/Image.html#PIL.Image.open

Read next: `vision/encoders.py` (the preprocessing that follows), `vision/cache.py` (features, once per image).
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from errors import UserError
from runtime.files import write_text_atomically

from .records import MAX_EXAMPLES, ImageRecord, LoadReport

MAX_BAD_FRACTION_ENV = "MAX_BAD_FRACTION"  # train.py's environment key for max_bad_fraction (training/config.py)


class BadImageError(Exception):
    """Why an image could not be used; the message is the short reason shown in reports ("truncated", ...)."""


def decode_image(path: Path | str) -> Image.Image:
    """Open and fully decode `path` as RGB, or raise `BadImageError` with a short reason."""
    path = Path(path)
    if not path.is_file():
        raise BadImageError("missing")
    try:
        with Image.open(path) as img:  # reads the header only
            limit = Image.MAX_IMAGE_PIXELS  # None means the user switched the check off
            if limit is not None and img.width * img.height > limit:
                raise BadImageError("decompression bomb")
            img.load()  # decode every pixel now, so a truncated file fails here and not mid-training
            return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImageError("decompression bomb") from err
    except BadImageError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on bad files
        raise BadImageError("truncated" if "truncated" in str(err).lower() else "unreadable") from err


def image_problem(path: Path) -> str | None:
    """Decode `path` fully; return None when it is a usable image, else the reason ("missing", ...)."""
    try:
        decode_image(Path(path))
    except BadImageError as err:
        return str(err)
    return None


def load_image(path: Path) -> Image.Image | None:
    """Return the image at `path` decoded as RGB, or None when it is missing or broken in any way."""
    try:
        return decode_image(Path(path))
    except BadImageError:
        return None


def check_max_bad_fraction(max_bad_fraction: float) -> None:
    """Refuse a share of bad images outside [0, 1] (NaN too), naming the flag and environment key that set it."""
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise UserError(
            f"max_bad_fraction={max_bad_fraction!r} is invalid; expected a number between 0 and 1 "
            f"(--max-bad-fraction, env {MAX_BAD_FRACTION_ENV})"
        )


def file_stamp(path: Path) -> list[int] | None:
    """[size in bytes, modification time in ns] of the file at `path`, or None when there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def read_verified(path: Path) -> dict[str, list[int]]:
    """The record of cleanly decoded images at `path` (see the module docstring); empty if absent or unreadable."""
    try:
        verified = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return verified if isinstance(verified, dict) else {}


def drop_bad_images(
    records: list[ImageRecord],
    report: LoadReport,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
    verified: Path | None = None,
) -> list[ImageRecord]:
    """Decode every record's image (in a thread pool) and return only the records whose image is usable.

    Each bad image is counted in `report` with its reason. When more than `max_bad_fraction` of the images are
    bad, raise `UserError` naming the fraction and a few example paths instead.
    `verified`: a file that records the images that decoded cleanly; those whose file is unchanged since are not
    decoded again, and the file is updated with this call's results.
    """
    check_max_bad_fraction(max_bad_fraction)
    known = read_verified(verified) if verified else {}
    stamps = [file_stamp(r.path) for r in records]

    def problem(path: Path, stamp: list[int] | None) -> str | None:
        if stamp is not None and known.get(str(path)) == stamp:
            return None  # decoded cleanly before, and the file has not changed since
        return image_problem(path)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(problem, [r.path for r in records], stamps))
    if verified:
        now = {str(r.path): stamp for r, stamp, p in zip(records, stamps, problems, strict=True) if p is None}
        if any(known.get(path) != stamp for path, stamp in now.items()):
            checked = {str(r.path) for r in records}  # their entries are this call's results; others are kept
            kept = {path: stamp for path, stamp in known.items() if path not in checked}
            try:  # saves work next time; a failed write (a full disk, a read-only cache) only costs that
                write_text_atomically(verified, json.dumps({**kept, **now}))
            except (UserError, OSError):
                pass
    bad = [(r, p) for r, p in zip(records, problems, strict=True) if p is not None]
    if records and len(bad) / len(records) > max_bad_fraction:
        examples = "; ".join(f"{r.path} ({p})" for r, p in bad[:MAX_EXAMPLES])
        raise UserError(
            f"{len(bad)} of {len(records)} images ({len(bad) / len(records):.1%}) are missing or unreadable, "
            f"more than the {max_bad_fraction:.1%} allowed, e.g. {examples}; check the image folder, "
            f"or allow more with --max-bad-fraction (env {MAX_BAD_FRACTION_ENV}), e.g. --max-bad-fraction "
            f"{math.ceil(len(bad) / len(records) * 100) / 100:.2f}"
        )
    for record, problem in bad:
        report.skip_image(record.path, problem)
    return [r for r, p in zip(records, problems, strict=True) if p is None]
