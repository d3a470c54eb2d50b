"""`load_dataset`: one call from a data source name to checked train / val / test splits.

    splits, report = load_dataset("shapes", cache_dir=Path(".data"))            # generated, offline
    splits, report = load_dataset("flickr30k", cache_dir=Path(".data"))         # nlphuji/flickr30k on the hub
    splits, report = load_dataset("hf:OWNER/REPO", cache_dir=Path(".data"))     # another repo in that layout
    splits, report = load_dataset("/path/to/flickr30k", cache_dir=Path(".data"), split="karpathy")
    print(report.summary())

The steps are the same for every source: read the annotations into `ImageRecord`s (`flickr30k.py`), decode
every image once and drop the broken ones (`images.py`), then split by image (`splits.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

from errors import UserError

from .flickr30k import DEFAULT_HUB_REPO, read_hub, read_local
from .images import drop_bad_images
from .records import LoadReport
from .shapes import generate_shapes, is_complete
from .splits import SCHEMES, Splits, split_records

_HUB_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
SOURCES = "'shapes', 'flickr30k', 'hf:OWNER/REPO' or a local folder"


def load_dataset(
    source: str,
    *,
    cache_dir: Path,
    split: str = "random",
    seed: int = 0,
    max_bad_fraction: float = 0.01,
    shapes_images: int = 2000,
) -> tuple[Splits, LoadReport]:
    """Load `source` ("shapes", "flickr30k", "hf:OWNER/REPO" or a local path) and split it by image.

    `split` is the scheme, "random" (80/10/10 from `seed`) or "karpathy" (the layout's own labels).
    The shapes set is generated into `cache_dir/shapes-seed{seed}-n{shapes_images}` unless already there.
    Raises `UserError` for an unknown source, a missing path, an unreadable layout, an unreachable hub, or
    more than `max_bad_fraction` broken images.
    """
    if split not in SCHEMES:  # fail before any download or generation
        raise UserError(f"unknown split scheme {split!r}; accepted: {', '.join(SCHEMES)}")
    cache_dir = Path(cache_dir).expanduser()
    if source == "shapes":
        folder = cache_dir / f"shapes-seed{seed}-n{shapes_images}"
        if not is_complete(folder, shapes_images):
            generate_shapes(folder, n_images=shapes_images, seed=seed)
        records, report = read_local(folder)
    elif source == "flickr30k" or source.startswith("hf:"):
        repo_id = DEFAULT_HUB_REPO if source == "flickr30k" else source.removeprefix("hf:")
        if not _HUB_REPO_ID.fullmatch(repo_id):
            raise UserError(f"{source!r} is not a hub dataset; write it as hf:OWNER/REPO")
        records, report = read_hub(repo_id, cache_dir)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise UserError(f"data source {source!r} is not {SOURCES}: no such file or folder")
        records, report = read_local(path)
    records = drop_bad_images(records, report, max_bad_fraction=max_bad_fraction)
    return split_records(records, split, seed), report
