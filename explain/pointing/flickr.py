"""The pointing game on Flickr30k Entities: the published pixel game and the cell game, with chance on the same
trials.

**Flickr30k Entities** (`flickr_game`; the reader is `data/flickr30k_entities.py`). Each caption of the split is fed
to the model as if it had written it (teacher forcing), as plain text ("doesn't", "grass.": the files hold Penn
Treebank tokens, `data/detokenize.py`); for each marked phrase, the map of its head noun is scored against the boxes
of the phrase's entity, two ways:
- **the pointing game as published** (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop",
  https://arxiv.org/abs/1608.00507): the map is brought to the image's pixels, and its maximum hits when it lies
  within 15 pixels of one of the boxes. The map has one value per cell and knows nothing finer, so it is drawn as
  flat blocks: its maximum is the whole peak cell (or cells), and the score is the share of their pixels within 15
  pixels of a box, what a uniformly random point of the maximum scores on average (1 a hit, 0 a miss). This is the
  headline. (Bilinear upsampling would put the maximum at a cell's centre: the cell game with 15 pixels of slack.)
- **the cell game**: the peak cell's centre lies in a box (ties scored as `explain/scoring.py` says).
Each score is given over all trials, comparable with other reports, and over the *decidable* ones: a trial cannot
be won when the encoder's crop cuts its boxes away (in the cell game also when no cell centre lies in one), and
cannot be lost when they cover the whole view (every cell centre); such trials are counted apart. Chance on the
same trials: a uniformly random point (a random cell), and the centre prior, the centre of the view (the centre
cells), a strong baseline on photos, which are framed around their subject.

Every marked phrase is either scored or counted under the reason it was not (`SKIP_REASONS`): not visual (entity 0),
not visible or the whole scene (no box), no head noun, a caption listed in the release's UNRELATED_CAPTIONS, no
photo, words and tokens that do not line up, or an image of the checkpoint's training split. Plummer et al.'s test
split is not Karpathy's, on which most captioners train, so a checkpoint may have seen some of its photos: the game
loads the checkpoint's training split again from its sidecar (`training_images`) and leaves those out unless told
not to. The photo's size is checked against the XML's `<size>`: a resized copy (common among the copies on the hub
and on Kaggle) has its view measured in the annotation's pixels, so it gives the same trials; any other size is an
error naming the image.

Read next: `explain/pointing/report.py` (the tables of both games).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data import CAPTION_PROMPT, load_image
from data.flickr30k import IMAGE_DIR_NAMES
from data.flickr30k_entities import NOT_VISUAL, EntityImage, Phrase, head_word, plain_text
from errors import UserError

from ..maps import Box, Grid, token_grid, view_box
from ..scoring import Tally, peak_cells, point, uniform_chance
from ..words import split_words
from .word_maps import features_of, methods_for, token_maps, word_map


def find_photo(images_dir: Path, image_id: str) -> Path | None:
    """ID.jpg (or .jpeg, .png) in `images_dir` or in a Flickr30k image folder inside it (as the zips unpack)."""
    for folder in ("", *IMAGE_DIR_NAMES):
        for suffix in (".jpg", ".jpeg", ".png"):
            path = images_dir / folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
    return None


TOLERANCE = 15  # pixels: a peak this close to a box hits (Zhang et al. 2016)
# Why a marked phrase is not scored, in the order they are checked (the report keeps this order).
SKIP_REASONS = (
    "image in the checkpoint's training split",
    "no photo (missing or unreadable)",
    "caption listed in UNRELATED_CAPTIONS",
    "words and tokens differ",
    "not visual (entity 0)",
    "whole scene and not visible",
    "whole scene",
    "not visible (nobndbox)",
    "no box in the annotation",
    "no head noun",
)


@dataclass(frozen=True)
class TrainingImages:
    """The image ids of the checkpoint's training split (None: unknown), and how they were found or why not."""

    ids: frozenset[str] | None
    note: str


def training_images(sidecar: dict, cache_dir: Path) -> TrainingImages:
    """The checkpoint's training split, loaded again as training loaded it (the sidecar's source, split scheme and
    seed; `data/loading.py` is deterministic). Unknown when the sidecar names no source or the data is not here."""
    from data import load_dataset

    data = sidecar.get("data", {})
    source, scheme, seed = data.get("source"), data.get("split", "random"), data.get("seed", 0)
    if not source:
        return TrainingImages(None, "the checkpoint's sidecar does not name its training data")
    if all(name.strip() == "shapes" for name in str(source).split(",")):
        return TrainingImages(frozenset(), "trained on the shapes set, which has no Flickr30k photo")
    bad = sidecar.get("train_config", {}).get("max_bad_fraction", 0.01)
    try:
        splits, _ = load_dataset(
            source, cache_dir=cache_dir, split=scheme, seed=seed, max_bad_fraction=bad,
            image_column=data.get("image_column"), caption_column=data.get("caption_column"),
        )  # fmt: skip
    except UserError as e:
        return TrainingImages(None, f"its training data ({source}) could not be loaded again: {e}")
    return TrainingImages(frozenset(r.image_id for r in splits.train), f"{source}, split {scheme}, seed {seed}")


def annotation_view(entry: EntityImage, photo: Image.Image, preprocess: object) -> tuple[Box, bool]:
    """The part of the photo the encoder sees, in the pixels of the XML's <size> (where the boxes and the 15 pixels
    are measured), and whether the photo is a resized copy. Raises UserError, naming the image, when the photo is
    neither the annotated one nor a copy resized with its aspect ratio kept (to a pixel of rounding)."""
    width, height = photo.size
    if entry.width <= 0 or entry.height <= 0:
        raise UserError(f"Flickr30k Entities image {entry.image_id}: its Annotations XML gives no <size>")
    sx, sy = width / entry.width, height / entry.height
    if abs(entry.width * sy - width) > 1 or abs(entry.height * sx - height) > 1:
        raise UserError(
            f"photo {entry.image_id} is {width}x{height} but its Flickr30k Entities annotation is for "
            f"{entry.width}x{entry.height}: neither the same photo nor a resized copy (--images is another set?)"
        )
    x0, y0, x1, y1 = view_box(preprocess, width, height)
    view: Box = (round(x0 / sx, 6), round(y0 / sy, 6), round(x1 / sx, 6), round(y1 / sy, 6))  # 35.0, not 34.99999999
    return view, (width, height) != (entry.width, entry.height)


@dataclass(frozen=True)
class Targets:
    """What a map of one phrase is scored against, on a side x side grid over the view (module docstring)."""

    cells: np.ndarray  # bool [side, side]: the cell's centre lies in one of the boxes (the cell game)
    near: np.ndarray  # float [side, side]: the share of the cell's pixels within TOLERANCE of a box (the pixel game)
    near_all: float  # the share of the view's pixels within TOLERANCE of a box: a uniform point's chance
    centre_near: bool  # whether the view's centre pixel is within TOLERANCE of a box


def targets(view: Box, boxes: Sequence[Box], side: int) -> Targets:
    """The cells and pixels of the view near the boxes (0-based pixels, far edges excluded, as the reader gives)."""
    x0, y0, x1, y1 = view
    xs = np.arange(math.ceil(x0 - 0.5), math.ceil(x1 - 0.5))  # the pixels whose centre lies in the view
    ys = np.arange(math.ceil(y0 - 0.5), math.ceil(y1 - 0.5))
    near = np.zeros((len(ys), len(xs)), dtype=bool)
    for bx0, by0, bx1, by1 in boxes:  # distance from a pixel to the box's nearest pixel, in whole pixels
        dx = np.maximum(np.maximum(bx0 - xs, xs - (bx1 - 1)), 0)
        dy = np.maximum(np.maximum(by0 - ys, ys - (by1 - 1)), 0)
        near |= dy[:, None] ** 2 + dx[None, :] ** 2 <= TOLERANCE**2
    col = np.clip(((xs + 0.5 - x0) / (x1 - x0) * side).astype(int), 0, side - 1)
    row = np.clip(((ys + 0.5 - y0) / (y1 - y0) * side).astype(int), 0, side - 1)
    cell = (row[:, None] * side + col[None, :]).ravel()
    pixels = np.bincount(cell, minlength=side * side)
    near_pixels = np.bincount(cell, weights=near.ravel(), minlength=side * side)
    centre = near[min(len(ys) - 1, int((y0 + y1) / 2 - ys[0])), min(len(xs) - 1, int((x0 + x1) / 2 - xs[0]))]
    return Targets(
        cells=Grid(view, side, side).inside(list(boxes)),
        near=(near_pixels / np.maximum(pixels, 1)).reshape(side, side),
        near_all=float(near.mean()),
        centre_near=bool(centre),
    )


def pixel_credit(values: np.ndarray, near: np.ndarray) -> float:
    """The pixel game's score of one map: the map drawn as flat blocks has its maximum over its peak cells, and a
    uniformly random point of them is within TOLERANCE of a box with this probability (1: hit, 0: miss)."""
    return float(near[peak_cells(values)].mean())


def count(tally: Tally, credit: float) -> None:
    """Add one trial's credit to `tally`: a hit, a miss, or in between (a tie, as `explain/scoring.py` names it)."""
    outcome = "hit" if credit >= 1 else "miss" if credit <= 0 else "tie"
    tally.hits += outcome == "hit"
    tally.misses += outcome == "miss"
    tally.ties += outcome == "tie"
    tally.credit += credit
    tally.outcomes.append(outcome)


def decidable(t: Targets, scoring: str) -> bool:
    """Whether a map can both win and lose this trial: not every cell or pixel near a box, and not none."""
    if scoring == "pixels":
        return 0 < t.near_all < 1
    return bool(t.cells.any() and not t.cells.all())


@dataclass
class Rows:
    """The teacher-forced captions of the game and its trials: one per scored phrase (its head noun)."""

    photos: list[Image.Image]
    entries: list[EntityImage]  # per photo, its annotation
    views: list[Box]  # per photo, the encoder's view in the annotation's pixels
    row_photo: list[int]  # per caption row, its photo
    targets: list[list[int]]  # per caption row, its tokens
    trials: list[tuple[int, int, int, int, str]]  # (row, first token, end token, photo, entity)


def phrase_problem(entry: EntityImage, phrase: Phrase) -> str | None:
    """Why `phrase` cannot be scored (one of SKIP_REASONS), or None."""
    if phrase.entity == NOT_VISUAL:
        return "not visual (entity 0)"
    if not entry.boxes.get(phrase.entity):
        scene, hidden = phrase.entity in entry.scene, phrase.entity in entry.no_box
        if scene and hidden:
            return "whole scene and not visible"
        if scene:
            return "whole scene"
        if hidden:
            return "not visible (nobndbox)"
        return "no box in the annotation"
    if head_word(phrase) is None:
        return "no head noun"
    return None


def flickr_rows(
    tokenizer, entity_images: Sequence[EntityImage], images_dir: Path, preprocess, leave_out: frozenset[str]
) -> tuple[Rows, dict, dict]:
    """Every marked phrase of `entity_images`: a trial, or a reason it is not one (counted in the second dict);
    the third counts images and captions."""
    rows = Rows([], [], [], [], [], [])
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    seen = {"images": len(entity_images), "photos": 0, "resized photos": 0, "captions": 0, "captions scored": 0}
    for entry in entity_images:
        seen["captions"] += len(entry.sentences)
        phrases = sum(len(s.phrases) for s in entry.sentences)
        if entry.image_id in leave_out:
            skipped["image in the checkpoint's training split"] += phrases
            continue
        path = find_photo(Path(images_dir), entry.image_id)
        photo = load_image(path) if path else None
        if photo is None:
            skipped["no photo (missing or unreadable)"] += phrases
            continue
        view, resized = annotation_view(entry, photo, preprocess)
        seen["photos"] += 1
        seen["resized photos"] += resized
        rows.photos.append(photo)
        rows.entries.append(entry)
        rows.views.append(view)
        for sentence in entry.sentences:
            if sentence.unrelated:
                skipped["caption listed in UNRELATED_CAPTIONS"] += len(sentence.phrases)
                continue
            text, word_of = plain_text(sentence)  # teacher-forced as plain text, "doesn't" and "grass."
            ids = tokenizer.encode(" " + text)
            words = split_words(tokenizer, ids)
            if len(words) != len(text.split()):
                skipped["words and tokens differ"] += len(sentence.phrases)
                continue
            row = len(rows.targets)
            for phrase in sentence.phrases:
                if problem := phrase_problem(entry, phrase):
                    skipped[problem] += 1
                    continue
                word = words[word_of[phrase.first_word + head_word(phrase)]]
                rows.trials.append((row, word.start, word.end, len(rows.photos) - 1, phrase.entity))
            if rows.trials and rows.trials[-1][0] == row:  # a caption with no trial is not fed to the model
                rows.row_photo.append(len(rows.photos) - 1)
                rows.targets.append(ids)
                seen["captions scored"] += 1
    return rows, skipped, seen


def chance(rows: Rows, targets_of, side: int) -> dict:
    """Chance on the game's own trials, over all of them and over the decidable ones: for the pixel game a uniform
    point of the view and the view's centre; for the cell game a uniform cell and the centre cell(s). And how many
    trials each game cannot lose or win."""
    out: dict = {}
    for name in ("pixels", f"cells {side}x{side}"):
        uniform: dict[str, list[float]] = {"all": [], "decidable": []}
        centre = {"all": Tally(), "decidable": Tally()}
        unwinnable = unlosable = 0
        for _, _, _, photo, entity in rows.trials:
            t = targets_of(photo, entity, side)
            if name == "pixels":
                share, centre_credit, fair = t.near_all, float(t.centre_near), decidable(t, "pixels")
                unwinnable, unlosable = unwinnable + (t.near_all == 0), unlosable + (t.near_all == 1)
            else:
                share, fair = uniform_chance(t.cells), decidable(t, "cells")
                centre_credit = point(centre_closeness(rows.views[photo], side), t.cells)[1]
                unwinnable, unlosable = unwinnable + (not t.cells.any()), unlosable + bool(t.cells.all())
            for subset in ("all", "decidable") if fair else ("all",):
                uniform[subset].append(share)
                count(centre[subset], centre_credit)
        out[name] = {
            "trials": len(rows.trials),
            "unwinnable": int(unwinnable),
            "unlosable": int(unlosable),
            "uniform": {k: float(np.mean(v)) if v else float("nan") for k, v in uniform.items()},  # nan: none decidable
            "centre": {k: v.accuracy for k, v in centre.items()},
        }
    return out


def centre_closeness(view: Box, side: int) -> np.ndarray:
    """A map that peaks at the centre of the view (the centre prior): minus each cell centre's distance to it."""
    g = Grid(view, side, side)
    x0, y0, x1, y1 = view
    centres = g.centres()
    return -np.hypot(centres[:, 0] - (x0 + x1) / 2, centres[:, 1] - (y0 + y1) / 2).reshape(side, side)


@torch.no_grad()
def flickr_game(
    model,
    tokenizer,
    entity_images: Sequence[EntityImage],
    images_dir: Path,
    methods: Sequence[str],
    grid: int,
    *,
    training: TrainingImages | None = None,
    leave_out_training: bool = True,
) -> dict:
    """The pointing game on Flickr30k Entities (see the module docstring); a JSON-ready dict of results.

    `training`: the checkpoint's training split (`training_images`); its images are left out unless
    `leave_out_training` is False, and counted either way."""
    methods = methods_for(model, methods)
    training = training or TrainingImages(None, "not looked up")
    known = training.ids is not None
    in_training = training.ids if known else frozenset()
    leave_out = in_training if leave_out_training else frozenset()
    rows, skipped, seen = flickr_rows(tokenizer, entity_images, images_dir, model.encoder.preprocess, leave_out)
    if not rows.trials:
        not_scored = ", ".join(f"{reason} {n}" for reason, n in skipped.items() if n)
        raise UserError(f"no Flickr30k Entities phrase could be scored (not scored: {not_scored or 'none marked'})")
    row_images = [rows.photos[i] for i in rows.row_photo]
    features = features_of(model, row_images)
    prompts = [tokenizer.encode(CAPTION_PROMPT)] * len(rows.targets)
    cache: dict[tuple[int, str, int], Targets] = {}  # an entity's boxes serve every caption of its image

    def targets_of(photo: int, entity: str, side: int) -> Targets:
        if (photo, entity, side) not in cache:
            cache[photo, entity, side] = targets(rows.views[photo], rows.entries[photo].boxes[entity], side)
        return cache[photo, entity, side]

    result: dict = {
        **seen,
        "phrases": {
            "marked": sum(len(s.phrases) for e in entity_images for s in e.sentences),
            "scored": len(rows.trials),
            "not scored": skipped,
        },
        "training split": {
            "known": known,
            "how": training.note,
            "images in it": len({e.image_id for e in entity_images} & in_training) if known else None,
            "left out": leave_out_training and known,
        },
        "methods": {},
        "chance": {},
    }
    for method in methods:
        side = token_grid(model.config.num_visual_tokens)[0] if method.startswith("attention") else grid
        maps = token_maps(model, method, row_images, features, prompts, rows.targets, side)
        scores = {name: {"all": Tally(), "decidable": Tally()} for name in ("pixels", "cells")}
        for row, start, end, photo, entity in rows.trials:
            t = targets_of(photo, entity, side)
            values = word_map(method, maps[row], start, end).reshape(side, side)
            for name, credit in (("pixels", pixel_credit(values, t.near)), ("cells", point(values, t.cells)[1])):
                count(scores[name]["all"], credit)
                if decidable(t, name):
                    count(scores[name]["decidable"], credit)
        result["methods"][method] = {
            "grid": f"{side}x{side}",
            **{name: {**s["all"].to_dict(), "decidable": s["decidable"].to_dict()} for name, s in scores.items()},
        }
        result["chance"].update(chance(rows, targets_of, side))
    return result
