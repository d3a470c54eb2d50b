"""Open image files defensively: one bad file must not stop a run over 100k images.

Real image folders contain truncated downloads, files that are not images at all, and occasionally
"decompression bombs": small files that declare enormous dimensions and would take gigabytes to decode.
Pillow guards against the last one by itself (https://pillow.readthedocs.io/en/stable/reference/Image.html,
`Image.MAX_IMAGE_PIXELS`, about 89 million pixels): above that limit it warns, above twice the limit it
raises. We turn the warning into an error too, and decode the whole image at once (`Image.open` only reads
the header; a truncated file would otherwise fail later, somewhere inside a transform).

`load_image` either returns a fully decoded RGB image or raises `BadImageError` with a one-line reason, so the
caller can skip the file and count it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image


class BadImageError(Exception):
    """The file could not be read as an image (missing, not an image, truncated, too large)."""


# What Pillow raises for unreadable files: OSError covers missing files, UnidentifiedImageError and
# "image file is truncated"; some decoders raise ValueError, SyntaxError or EOFError on corrupt data.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


def load_image(path: Path | str) -> Image.Image:
    """Open, fully decode and convert an image to RGB, or raise `BadImageError`."""
    try:
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that, Pillow only warns: treat it as a bomb as well.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode every pixel now, so corrupt data fails here
                return image.convert("RGB")
    except _DECODE_ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadImageError(f"{path}: {reason}") from exc
