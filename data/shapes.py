"""A generated dataset of coloured shapes, with captions and questions that are true of the pixels.

The offline demo needs data that needs no download and that a small model can genuinely learn in minutes,
so we draw it: each image holds 1-3 flat shapes (circle, square, triangle, star) in 6 well-separated named
colours on a light, sometimes lightly noisy, background. It is in the spirit of synthetic visual-reasoning
sets such as CLEVR (Johnson et al. 2017, https://arxiv.org/abs/1612.06890) and ShapeWorld
(Kuhnle & Copestake 2017, https://arxiv.org/abs/1704.04517), scaled down to a toy.

Design choices that keep every sentence unambiguous and true:
- The image is a 3 x 3 grid and each shape lives inside its own cell (position and size vary within the
  cell). So shapes never overlap, "where is the circle?" has a clear answer ("top left", "in the middle",
  ...), and "A to the left of B" is only said when A's cell is left of B's, i.e. with a visible gap.
- Shapes in one image have distinct kinds AND distinct colours, so "what colour is the circle?" and
  "what shape is red?" each have exactly one answer.
- Shapes are drawn flat (no noise, no anti-aliasing) after the background, so the pixel at a shape's centre is
  exactly its colour; the tests check that.

Everything comes from one `numpy.random.default_rng(seed)`: the same seed gives byte-identical files.
The output uses the Karpathy layout of Flickr30k (`dataset_shapes.json` + `images/`), so the same loader
reads both; each json entry also has `qa` (question-answer pairs) and `scene` (what was drawn, for checking).

Read next: `demo/decoders.py` (the demo's tokenizer and decoder, learned from this text), `data/batches.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import UserError
from runtime.files import WRITE_ERRORS, describe_write_error, write_text_atomically

KINDS = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
}
NUMBER_WORDS = ("zero", "one", "two", "three")
# Grid cell (row, col) -> short answer to "where is the X?" and the phrase used in captions.
POSITION_ANSWERS = (
    ("top left", "at the top", "top right"),
    ("on the left", "in the middle", "on the right"),
    ("bottom left", "at the bottom", "bottom right"),
)
POSITION_PHRASES = (
    ("in the top left corner", "at the top", "in the top right corner"),
    ("on the left", "in the middle", "on the right"),
    ("in the bottom left corner", "at the bottom", "in the bottom right corner"),
)
GRID = 3
ANNOTATION_FILE = "dataset_shapes.json"
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
# Bumped whenever the generator's output changes, so a cached set from an older version is made again.
# 2: "is there a X?" for one kind present and one absent, instead of all four kinds.
FORMAT_VERSION = 2


@dataclass
class Shape:
    """One drawn shape: what and where (pixel centre, bounding-box side in pixels, grid cell)."""

    kind: str
    colour: str
    rgb: tuple[int, int, int]
    centre: tuple[int, int]  # (x, y)
    size: int
    cell: tuple[int, int]  # (row, col)

    @property
    def name(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"  # "an orange circle"
        return f"{article} {self.colour} {self.kind}"


# ---------------------------------------------------------------------------------------------------------------------
# Sampling and drawing


def sample_scene(rng: np.random.Generator, image_size: int) -> list[Shape]:
    """1-3 shapes with distinct kinds, colours and grid cells, each strictly inside its cell."""
    n = int(rng.integers(1, 4))
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    kinds = rng.choice(len(KINDS), size=n, replace=False)
    colours = rng.choice(len(COLOURS), size=n, replace=False)
    colour_names = list(COLOURS)
    cell_px = image_size / GRID
    shapes = []
    for cell, kind, colour in zip(cells, kinds, colours, strict=True):
        row, col = divmod(int(cell), GRID)
        size = int(rng.integers(int(0.6 * cell_px), int(0.95 * cell_px) + 1))
        # Jitter the centre but keep the whole shape (plus a 1-pixel gap) inside its cell.
        slack = max(0, int((cell_px - size) / 2) - 1)
        cx = round((col + 0.5) * cell_px) + int(rng.integers(-slack, slack + 1))
        cy = round((row + 0.5) * cell_px) + int(rng.integers(-slack, slack + 1))
        name = colour_names[int(colour)]
        shapes.append(Shape(KINDS[int(kind)], name, COLOURS[name], (cx, cy), size, (row, col)))
    # Reading order (left to right, then top to bottom) makes the captions' shape order predictable.
    return sorted(shapes, key=lambda s: (s.cell[1], s.cell[0]))


def _star_points(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """A 5-pointed star: outer points at radius r, inner ones at 0.45 r, the first pointing up."""
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return [(float(cx + rad * np.cos(a)), float(cy + rad * np.sin(a))) for a, rad in zip(angles, radii, strict=True)]


def draw_scene(
    shapes: list[Shape], image_size: int, background: tuple[int, int, int], noise: np.ndarray | None
) -> Image.Image:
    """Render the shapes flat on a light background (plus optional low-amplitude grey noise)."""
    pixels = np.broadcast_to(np.array(background, dtype=np.int16), (image_size, image_size, 3))
    if noise is not None:
        pixels = pixels + noise  # [H, W, 3] + [H, W, 1]: the same grey offset on all three channels
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for s in shapes:
        cx, cy = s.centre
        r = s.size / 2
        box = [cx - r, cy - r, cx + r, cy + r]
        if s.kind == "circle":
            draw.ellipse(box, fill=s.rgb)
        elif s.kind == "square":
            draw.rectangle(box, fill=s.rgb)
        elif s.kind == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=s.rgb)
        else:
            draw.polygon(_star_points(cx, cy, r), fill=s.rgb)
    return img


# ---------------------------------------------------------------------------------------------------------------------
# Language: captions and question-answer pairs derived from the scene


def _join(names: list[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def relation(a: Shape, b: Shape) -> str:
    """How `a` sits relative to `b`, from their (distinct) grid cells: a column difference wins."""
    (ra, ca), (rb, cb) = a.cell, b.cell
    if ca != cb:
        return "to the left of" if ca < cb else "to the right of"
    return "above" if ra < rb else "below"


def captions_for(shapes: list[Shape]) -> list[str]:
    """Five different phrasings, each true of the drawing."""
    names = [s.name for s in shapes]
    count = f"{NUMBER_WORDS[len(shapes)]} shape{'s' if len(shapes) > 1 else ''}: {_join(names)}"
    if len(shapes) == 1:
        (s,) = shapes
        where = POSITION_PHRASES[s.cell[0]][s.cell[1]]
        return [s.name, f"{s.name} {where}", count, f"a picture of {s.name}", f"{s.name} on a light background"]
    first, last = shapes[0], shapes[-1]
    positions = [f"{s.name} {POSITION_PHRASES[s.cell[0]][s.cell[1]]}" for s in shapes]
    return [
        _join(names),
        f"{first.name} {relation(first, last)} {last.name}",
        count,
        f"a picture of {_join(names[::-1])}",
        _join(positions),
    ]


def qa_for(shapes: list[Shape], rng: np.random.Generator) -> list[tuple[str, str]]:
    """Question-answer pairs with 1-3 word answers; numbers are words.

    "is there a X?" is asked of one kind that is in the picture and one that is not (a scene has at most 3 of the 4
    kinds), so "yes" and "no" are equally common. Asking all four kinds would add two more near-copies of these
    easy questions per image: an eighth more training samples, and so time, for little that is new.
    """
    qa = [("how many shapes are there?", NUMBER_WORDS[len(shapes)])]
    for s in shapes:
        qa.append((f"what colour is the {s.kind}?", s.colour))
        qa.append((f"what shape is {s.colour}?", s.kind))
        qa.append((f"where is the {s.kind}?", POSITION_ANSWERS[s.cell[0]][s.cell[1]]))
    drawn = {s.kind for s in shapes}
    present, absent = [k for k in KINDS if k in drawn], [k for k in KINDS if k not in drawn]
    asked = {str(rng.choice(present)), str(rng.choice(absent))}
    qa.extend((f"is there a {kind}?", "yes" if kind in present else "no") for kind in KINDS if kind in asked)
    return qa


# ---------------------------------------------------------------------------------------------------------------------
# The dataset on disk


def split_labels(n_images: int) -> list[str]:
    """80/10/10 train/val/test labels by position (the images are already in random order)."""
    n_val = round(n_images * SPLIT_FRACTIONS["val"])
    n_test = round(n_images * SPLIT_FRACTIONS["test"])
    return ["train"] * (n_images - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


def generate_shapes(out_dir: Path, n_images: int = 2000, seed: int = 0, image_size: int = 64) -> Path:
    """Draw `n_images` shape images into `out_dir/images/` and write `out_dir/dataset_shapes.json`; return out_dir.

    Deterministic: the same (n_images, seed, image_size) gives byte-identical files. The json is written last
    (atomically), so a folder with a json is complete. When a write fails, the images this call wrote are removed
    and a write the machine refused (disk full, file-size limit, ...) is one `UserError` line.
    """
    if n_images < 1:
        raise UserError(f"the shapes set needs at least 1 image, got n_images={n_images}")
    if image_size < 24:
        raise UserError(f"image_size must be at least 24 pixels for shapes to be recognisable, got {image_size}")
    out_dir = Path(out_dir)
    written: list[Path] = []  # the images this call wrote, removed again if it fails
    try:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / ANNOTATION_FILE).unlink(missing_ok=True)  # the folder is incomplete until the json is back
        rng = np.random.default_rng(seed)
        # The questions asked get their own random stream, so choosing them leaves the images as they were.
        question_rng = np.random.default_rng([seed, 1])
        entries = []
        for i, split in enumerate(split_labels(n_images)):
            shapes = sample_scene(rng, image_size)
            background = tuple(int(v) for v in rng.integers(228, 251, size=3))
            textured = bool(rng.random() < 0.5)
            noise = rng.integers(-6, 7, size=(image_size, image_size, 1)) if textured else None  # [H, W, 1]
            filename = f"shape_{i:05d}.png"
            written.append(out_dir / "images" / filename)
            draw_scene(shapes, image_size, background, noise).save(written[-1])
            entries.append(
                {
                    "imgid": i,
                    "filename": filename,
                    "split": split,
                    "sentences": [{"raw": c} for c in captions_for(shapes)],
                    "qa": [{"question": q, "answer": a} for q, a in qa_for(shapes, question_rng)],
                    "scene": {"background": background, "textured": textured, "shapes": [asdict(s) for s in shapes]},
                }
            )
        # One image per line: readable with `head`, and far faster than json's pure-Python indent mode.
        header = json.dumps({"dataset": "shapes", "version": FORMAT_VERSION, "seed": seed, "image_size": image_size})
        body = ",\n".join(json.dumps(e) for e in entries)
        # Atomic: readers see no json or the whole json (and a write the machine refuses is one UserError line).
        write_text_atomically(out_dir / ANNOTATION_FILE, f'{header[:-1]}, "images": [\n{body}\n]}}\n')
    except BaseException as exc:
        sizes = [p.stat().st_size for p in written if p.is_file()]  # the last one may be half-written
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
            # About how much the whole set needs, from the images written before the failed one.
            needed = sum(sizes[:-1]) * n_images // (len(sizes) - 1) if len(sizes) > 1 else None
            written_bytes = sizes[-1] if sizes else None
            raise describe_write_error(written[-1] if written else out_dir, exc, needed, written_bytes) from exc
        raise
    return out_dir


def is_complete(out_dir: Path, n_images: int) -> bool:
    """True when `out_dir` holds a finished shapes set of `n_images` images (json present, every image on disk)."""
    try:
        annotation = json.loads((Path(out_dir) / ANNOTATION_FILE).read_text(encoding="utf-8"))
        images = annotation["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if annotation.get("version") != FORMAT_VERSION:  # written by an older generator: made again
        return False
    return len(images) == n_images and all((Path(out_dir) / "images" / e["filename"]).is_file() for e in images)
