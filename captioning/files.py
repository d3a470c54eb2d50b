"""The image files a command names, and why one is refused: named files are always tried, folders are searched by
suffix (`collect_images`); a file that cannot be captioned is a `Problem`, one line for the user, its reason worded
from `data.images.image_problem` (`PROBLEMS`, which the page shows too).

Read next: `captioning/access.py` (the page's login and limits), `caption.py` (the command line that reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PROBLEMS = {  # data.images.image_problem's reasons, as a user reads them
    "missing": "no such file",
    "unreadable": "not an image (or not a format Pillow can read)",
    "truncated": "the image file is truncated (an interrupted download?)",
    "decompression bomb": f"the image is too large (over {Image.MAX_IMAGE_PIXELS or 0:,} pixels)",
}


@dataclass
class Problem:
    """An input that could not be captioned, and why (one line for the user)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def collect_images(inputs: Sequence[str]) -> tuple[list[Path], list[Problem]]:
    """The image files named, and those under the folders named (recursively, by suffix, sorted).

    A named file is always tried, whatever its suffix (it fails later, with a reason, if it is no image); inside a
    folder only files with an image suffix count, so a README next to the photos is not an error.
    """
    paths, problems = [], []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(Problem(raw, f"no images in this folder (looked for {' '.join(IMAGE_SUFFIXES)})"))
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            problems.append(Problem(raw, "no such file or folder"))
    return paths, problems
