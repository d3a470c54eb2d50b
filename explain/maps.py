"""Where a map lies on the image: a grid of cells over the part of the image the encoder sees.

Both methods give one number per cell of a grid, row-major from the top left:
- attention (`explain/attention.py`): one cell per visual token of the hidden view, which pools the encoder's patch
  grid to √N × √N (`bridge/adapters.py`, `HiddenStateProjector.pool`), so token i covers cell (i // √N, i % √N);
- occlusion (`explain/occlusion.py`): one cell per masked patch, on any grid.

The encoder does not see the whole file: its preprocessing resizes the shorter side and crops the centre (ViT-B/16:
to 248, then 224 × 224; the demo's tiny ViT: 48 × 48 from a square image, which keeps everything). `view_box` finds
that crop in the original image's pixels from the transform itself, so a map can be drawn over the photo and a box
annotated on the photo can be compared with it. A transform that is not a resize-then-crop is taken to see the whole
image.

Read next: `explain/scoring.py` (is a map's peak inside the object?), `explain/render.py` (drawing it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in the original image's pixels, x1 and y1 excluded


@dataclass(frozen=True)
class Grid:
    """`rows` × `cols` equal cells tiling `box` (the encoder's view of the image, in original pixels)."""

    box: Box
    rows: int
    cols: int

    def cell_box(self, index: int) -> Box:
        """Cell `index` (row-major) in original pixels."""
        r, c = divmod(index, self.cols)
        x0, y0, x1, y1 = self.box
        w, h = (x1 - x0) / self.cols, (y1 - y0) / self.rows
        return (x0 + c * w, y0 + r * h, x0 + (c + 1) * w, y0 + (r + 1) * h)

    def centres(self) -> np.ndarray:
        """The centre (x, y) of every cell, [rows * cols, 2], in original pixels."""
        boxes = np.array([self.cell_box(i) for i in range(self.rows * self.cols)])  # [cells, 4]
        return (boxes[:, :2] + boxes[:, 2:]) / 2

    def inside(self, boxes: list[Box]) -> np.ndarray:
        """Which cells have their centre inside one of `boxes`: bool [rows, cols]."""
        centres = self.centres()
        hit = np.zeros(len(centres), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            hit |= (centres[:, 0] >= x0) & (centres[:, 0] < x1) & (centres[:, 1] >= y0) & (centres[:, 1] < y1)
        return hit.reshape(self.rows, self.cols)


def view_box(preprocess: object, width: int, height: int) -> Box:
    """The part of a `width` × `height` image that `preprocess` keeps (resize the shorter side, crop the centre).

    Reads torchvision's `Resize` and `CenterCrop` out of the transform (timm's and open_clip's eval transforms are
    made of them); any other transform is taken to keep the whole image.
    """
    steps = list(getattr(getattr(preprocess, "transform", preprocess), "transforms", []))
    resize = next((s for s in steps if type(s).__name__ == "Resize"), None)
    crop = next((s for s in steps if type(s).__name__ == "CenterCrop"), None)
    if resize is None:
        return (0.0, 0.0, float(width), float(height))
    size = resize.size
    if isinstance(size, int) or len(size) == 1:  # the shorter side to `size`, the aspect ratio kept
        side = size if isinstance(size, int) else size[0]
        sx = sy = side / min(width, height)
    else:  # (height, width): stretched
        sy, sx = size[0] / height, size[1] / width
    resized_w, resized_h = width * sx, height * sy
    if crop is None:
        return (0.0, 0.0, float(width), float(height))
    crop_h, crop_w = (crop.size, crop.size) if isinstance(crop.size, int) else tuple(crop.size)
    crop_w, crop_h = min(crop_w, resized_w), min(crop_h, resized_h)
    left, top = (resized_w - crop_w) / 2, (resized_h - crop_h) / 2
    return (left / sx, top / sy, (left + crop_w) / sx, (top + crop_h) / sy)


def token_grid(num_tokens: int) -> tuple[int, int] | None:
    """(rows, cols) of the hidden view's visual tokens when they form a square grid, else None (no place)."""
    side = math.isqrt(num_tokens)
    return (side, side) if side * side == num_tokens else None


def normalise(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] for display (a constant map becomes all zeros)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
