"""The pointing game, played: on the shapes set (with chance and controls) and on Flickr30k Entities.

    python -m explain.pointing --checkpoint RUN/3_tiny_top2.safetensors                      # the demo model
    python -m explain.pointing --checkpoint HIDDEN.safetensors --checkpoint POOLED.safetensors --best-head \\
        --out experiments/results/pointing                                                    # EXPERIMENTS.md
    python -m explain.pointing --checkpoint CKPT --data flickr30k-entities:ENTITIES_DIR --images FLICKR_IMAGES

**Shapes** (`shapes_game`). The model captions each held-out image greedily. Every caption word that names a shape in
the picture, its kind ("circle") or its colour ("red"; each colour and kind occurs once per image), is a trial; the
truth is that shape's grid cell (the image's `scene`), and a map is scored on the same 3 × 3 grid
(`explain/scoring.py`). Each method is scored:
- on the trained model;
- with the bridge untrained (re-initialised as before training): the same words, maps from a model whose visual
  tokens carry no learned meaning;
- with the images shuffled: the same words, maps computed on another test image, truth from the word's own image.
  A map that points right here points by habit (a favourite cell), not by looking.
Beside the chance levels: uniform over the 9 cells, and uniform over the cells that hold a shape.

"Where is the X?": the model answers each held-out question of that form; the map of its whole answer is scored
against X's cell, and the answers' accuracy is split by whether the map's peak was in that cell.

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

Read next: `EXPERIMENTS.md` ("Where the model looks") for the numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bridge.vlm import fresh_bridge
from data import CAPTION_PROMPT, ImageRecord, load_image, question_prompt
from data.flickr30k import IMAGE_DIR_NAMES
from data.flickr30k_entities import NOT_VISUAL, EntityImage, Phrase, head_word, plain_text
from data.shapes import ANNOTATION_FILE, GRID, POSITION_ANSWERS
from errors import UserError

from . import attention as attention_maps
from .maps import Box, Grid, token_grid, view_box
from .occlusion import model_log_probs, occlusion_drops
from .scoring import Tally, peak_cells, point, uniform_chance
from .words import clean, split_words

BATCH = 64  # rows per teacher-forced pass


@dataclass(frozen=True)
class Trial:
    """One word to point at: image `image`, output tokens [start, end), the cells it names (bool [rows, cols])."""

    image: int
    start: int
    end: int
    inside: np.ndarray
    group: str  # "kind" or "colour": what the word names of the shape
    shapes: int = 0  # shapes in the image (the "occupied" chance level)


# ------------------------------------------------------------------------------------------------ maps, in batches


def features_of(model, images: Sequence[Image.Image]) -> torch.Tensor:
    """The frozen encoder's features of `images` in the model's view, BATCH at a time."""
    chunks = []
    for start in range(0, len(images), BATCH):
        pixels = torch.stack([model.encoder.preprocess(im) for im in images[start : start + BATCH]])
        chunks.append(model.encoder(pixels.to(model.encoder.device), view=model.config.view))
    return torch.cat(chunks)


def token_maps(
    model,
    method: str,
    images: Sequence[Image.Image],
    features: torch.Tensor,
    prompts: Sequence[list[int]],
    targets: Sequence[list[int]],
    grid: int,
) -> list[torch.Tensor]:
    """Each row's per-token map [T, cells] by `method` ("attention:CHOICE" or "occlusion:FILL"); row i reads
    images[i] / features[i] with prompts[i] and targets[i]."""
    kind, _, option = method.partition(":")
    maps: list[torch.Tensor] = []
    if kind == "attention":
        N = model.config.num_visual_tokens
        for start in range(0, len(targets), BATCH):
            rows = slice(start, start + BATCH)
            weights = attention_maps.attention_weights_per_row(model, features[rows], prompts[rows], targets[rows])
            maps += [
                attention_maps.token_maps(w, option, N, len(p), len(t))
                for w, p, t in zip(weights, prompts[rows], targets[rows], strict=True)
            ]
        return maps
    if kind == "occlusion":
        log_probs = model_log_probs(model, prompts, targets)
        return occlusion_drops(images, log_probs, grid, option, model.encoder.preprocess, batch_size=BATCH)
    raise ValueError(f"unknown method {method!r}; expected attention:CHOICE or occlusion:FILL")


def word_map(method: str, per_token: torch.Tensor, start: int, end: int) -> np.ndarray:
    """A word's map from its tokens' maps: attention averaged, log-probability drops added."""
    span = per_token[start:end]
    return (span.mean(0) if method.startswith("attention") else span.sum(0)).float().numpy()


@contextmanager
def untrained_bridge(model, seed: int = 0) -> Iterator[None]:
    """Within the block, `model`'s bridge is re-initialised as `VisionLanguageModel.__init__` builds it (untrained);
    the trained one is put back afterwards. Nothing else is copied (a 0.6B decoder stays where it is)."""
    torch.manual_seed(seed)
    fresh = fresh_bridge(model.config, model.encoder, model.decoder)
    trained = model.bridge
    model.bridge = fresh.eval()
    try:
        yield
    finally:
        model.bridge = trained


def derangement(n: int, seed: int = 0) -> list[int]:
    """A shuffled order of range(n) in which no index stays in place (n >= 2)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    return [int(order[(int(np.flatnonzero(order == i)[0]) + 1) % n]) for i in range(n)]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def score(method: str, maps: list[torch.Tensor], trials: Sequence[Trial], group: str | None = None) -> Tally:
    tally = Tally()
    for t in trials:
        if group is None or t.group == group:
            tally.add(word_map(method, maps[t.image], t.start, t.end).reshape(t.inside.shape), t.inside)
    return tally


def methods_for(model, methods: Sequence[str]) -> list[str]:
    """`methods` without the attention ones when the view gives the visual tokens no place (the pooled view)."""
    has_grid = model.config.view == "hidden" and token_grid(model.config.num_visual_tokens) is not None
    return [m for m in methods if has_grid or not m.startswith("attention")]


# ------------------------------------------------------------------------------------------------ the shapes set


def shapes_scenes(records: Sequence[ImageRecord]) -> dict[str, dict]:
    """The `scene` of every image of the shapes set the records come from, by file name."""
    folder = records[0].path.parents[1]
    annotation = folder / ANNOTATION_FILE
    if not annotation.is_file():
        raise UserError(
            f"no {ANNOTATION_FILE} beside {records[0].path.parent}: the checkpoint was not trained on shapes"
        )
    return {e["filename"]: e["scene"] for e in json.loads(annotation.read_text())["images"]}


def cell_mask(cell: Sequence[int]) -> np.ndarray:
    mask = np.zeros((GRID, GRID), dtype=bool)
    mask[cell[0], cell[1]] = True
    return mask


def greedy(
    model, tokenizer, features: torch.Tensor, prompts: Sequence[list[int]], max_new_tokens: int
) -> list[list[int]]:
    out = []
    for start in range(0, len(prompts), BATCH):
        rows = slice(start, start + BATCH)
        out += model.generate(
            list(prompts[rows]), features=features[rows], max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_id
        )
    return out


def caption_trials(tokenizer, outputs: Sequence[list[int]], scenes: Sequence[dict]) -> list[Trial]:
    """Every caption word that names a shape in its image (its kind or its colour), with that shape's cell."""
    trials = []
    for i, (ids, scene) in enumerate(zip(outputs, scenes, strict=True)):
        shapes = scene["shapes"]
        names = {s["kind"]: ("kind", s["cell"]) for s in shapes} | {s["colour"]: ("colour", s["cell"]) for s in shapes}
        for word in split_words(tokenizer, ids):
            if word.key in names:
                group, cell = names[word.key]
                trials.append(Trial(i, word.start, word.end, cell_mask(cell), group, len(shapes)))
    return trials


@torch.no_grad()
def shapes_game(
    model,
    tokenizer,
    records: Sequence[ImageRecord],
    methods: Sequence[str],
    *,
    controls: bool = True,
    where: bool = True,
    max_new_tokens: int = 24,
    seed: int = 0,
) -> dict:
    """The pointing game on held-out shapes images (see the module docstring); a JSON-ready dict of results."""
    scenes_by_name = shapes_scenes(records)
    scenes = [scenes_by_name[r.path.name] for r in records]
    images = [load_image(r.path) for r in records]
    features = features_of(model, images)
    prompt = tokenizer.encode(CAPTION_PROMPT)
    prompts = [prompt] * len(records)
    outputs = greedy(model, tokenizer, features, prompts, max_new_tokens)
    trials = caption_trials(tokenizer, outputs, scenes)
    methods = methods_for(model, methods)
    result: dict = {
        "images": len(records),
        "words": {g: sum(t.group == g for t in trials) for g in ("kind", "colour")},
        "chance": {
            g: {
                "uniform": _mean([uniform_chance(t.inside) for t in trials if t.group == g]),
                "occupied": _mean([1 / t.shapes for t in trials if t.group == g]),
            }
            for g in ("kind", "colour")
        },
        "methods": {},
        "captions": [tokenizer.decode(ids).strip() for ids in outputs[:5]],
    }
    variants = {"trained": (contextlib.nullcontext, images, features)}
    if controls:
        order = derangement(len(images), seed)
        variants["untrained bridge"] = (lambda: untrained_bridge(model, seed), images, features)
        variants["shuffled images"] = (contextlib.nullcontext, [images[j] for j in order], features[order])
    result["seconds_per_image"] = {}  # the trained model's maps for every caption word, one thread unless set
    for method in methods:
        result["methods"][method] = {}
        for name, (setting, ims, feats) in variants.items():
            started = time.perf_counter()
            with setting():
                maps = token_maps(model, method, ims, feats, prompts, outputs, GRID)
            if name == "trained":
                result["seconds_per_image"][method] = (time.perf_counter() - started) / len(records)
            result["methods"][method][name] = {g: score(method, maps, trials, g).to_dict() for g in ("kind", "colour")}
    if where:
        result["where"] = where_is(model, tokenizer, records, images, scenes, methods, max_new_tokens)
    return result


def where_is(model, tokenizer, records, images, scenes, methods: Sequence[str], max_new_tokens: int) -> dict:
    """ "Where is the X?": the answers' exact match, split by whether the answer's map peaks in X's cell."""
    rows, prompts, truths, masks = [], [], [], []
    for i, (record, scene) in enumerate(zip(records, scenes, strict=True)):
        cells = {s["kind"]: s["cell"] for s in scene["shapes"]}
        for question, answer in record.qa:
            kind = question.removeprefix("where is the ").removesuffix("?")
            if question.startswith("where is the ") and kind in cells:
                rows.append(i)
                prompts.append(tokenizer.encode(question_prompt(question)))
                truths.append(answer)
                masks.append(cell_mask(cells[kind]))
    if not rows:
        return {}
    row_images = [images[i] for i in rows]
    features = features_of(model, row_images)
    answers = greedy(model, tokenizer, features, prompts, max_new_tokens)
    correct = [clean(tokenizer.decode(a)) == clean(t) for a, t in zip(answers, truths, strict=True)]
    out = {"questions": len(rows), "exact_match": float(np.mean(correct)), "by_peak": {}}
    for method in methods:
        maps = token_maps(model, method, row_images, features, prompts, answers, GRID)
        groups: dict[str, list[bool]] = {"hit": [], "miss": [], "tie": []}
        for per_token, answer, mask, ok in zip(maps, answers, masks, correct, strict=True):
            outcome, _ = point(word_map(method, per_token, 0, len(answer)).reshape(mask.shape), mask)
            groups[outcome].append(ok)
        out["by_peak"][method] = {
            k: {"answers": len(v), "exact_match": float(np.mean(v)) if v else None} for k, v in groups.items()
        }
    out["answer_positions"] = sorted({a for row in POSITION_ANSWERS for a in row})
    return out


def best_head(model, tokenizer, records: Sequence[ImageRecord], max_new_tokens: int = 24) -> tuple[str, dict]:
    """The attention head that points right most often at kind words on `records` (the validation split):
    ("head:L.H", {choice: accuracy})."""
    scenes_by_name = shapes_scenes(records)
    scenes = [scenes_by_name[r.path.name] for r in records]
    images = [load_image(r.path) for r in records]
    features = features_of(model, images)
    prompts = [tokenizer.encode(CAPTION_PROMPT)] * len(records)
    outputs = greedy(model, tokenizer, features, prompts, max_new_tokens)
    trials = caption_trials(tokenizer, outputs, scenes)
    cfg = model.decoder.config
    N = model.config.num_visual_tokens
    weights = []
    for start in range(0, len(records), BATCH):
        rows = slice(start, start + BATCH)
        weights += attention_maps.attention_weights_per_row(model, features[rows], prompts[rows], outputs[rows])
    scores = {}
    for layer in range(cfg.num_hidden_layers):
        for head in range(cfg.num_attention_heads):
            choice = f"head:{layer}.{head}"
            maps = [
                attention_maps.token_maps(w, choice, N, len(p), len(o))
                for w, p, o in zip(weights, prompts, outputs, strict=True)
            ]
            scores[choice] = score("attention:" + choice, maps, trials, "kind").accuracy
    return max(scores, key=scores.get), scores


# ------------------------------------------------------------------------------------------------ Flickr30k Entities


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
            "uniform": {k: _mean(v) for k, v in uniform.items()},
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


# ------------------------------------------------------------------------------------------------ command line

DEFAULT_METHODS = ("attention:last", "attention:mean", "attention:rollout", "occlusion:background", "occlusion:mean",
                   "occlusion:blur")  # fmt: skip


def default_methods(model) -> list[str]:
    """DEFAULT_METHODS plus each layer's attention alone."""
    layers = [f"attention:layer:{i}" for i in range(model.decoder.config.num_hidden_layers)]
    return [*DEFAULT_METHODS[:3], *layers, *DEFAULT_METHODS[3:]]


def check_methods(methods: Sequence[str], model) -> None:
    from .occlusion import FILLS

    cfg = model.decoder.config
    for method in methods:
        kind, _, option = method.partition(":")
        try:
            if kind == "attention":
                attention_maps.check_choice(option, cfg.num_hidden_layers, cfg.num_attention_heads)
            elif kind != "occlusion" or option not in FILLS:
                raise ValueError(f"expected attention:CHOICE or occlusion:{{{','.join(FILLS)}}}")
        except ValueError as e:
            raise UserError(f"--methods: {method!r} is invalid ({e})") from None


def build_parser():
    from errors import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m explain.pointing", description="The pointing game (explain/games.py).")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a .safetensors checkpoint or its .json sidecar, a run folder, an output folder, hf:OWNER/NAME "
                   "or latest (checkpoints/resolve.py); repeat for each view")  # fmt: skip
    p.add_argument("--data", default="shapes",
                   help="shapes (the checkpoint's own held-out split) or flickr30k-entities:DIR (Sentences/, Annotations/)")  # fmt: skip
    p.add_argument("--images", help="with flickr30k-entities: the folder of Flickr30k photos, ID.jpg (default: none)")
    p.add_argument("--split", default="test", help="the split to score (default test)")
    p.add_argument("--limit", type=int, help="score only the first N images of the split (default: all)")
    p.add_argument("--methods", help="comma-separated attention:CHOICE / occlusion:FILL (default: all of them)")
    p.add_argument("--best-head", action="store_true", help="also score the head that points best on the val split")
    p.add_argument("--no-controls", action="store_true", help="skip the untrained-bridge and shuffled-image controls")
    p.add_argument("--grid", type=int, help="occlusion cells per side on Flickr30k (default: explain.explanation)")
    p.add_argument("--include-training-images", action="store_true",
                   help="flickr30k-entities: score the photos of the checkpoint's training split too (default: left out)")  # fmt: skip
    p.add_argument("--cache-dir", help="where the training data is cached (default: the checkpoint's training setting)")
    p.add_argument("--out", help="also write results.json, table.md and pointing.png into this folder (default: none)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: fastest for the demo's sizes)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p


def check_args(args) -> None:
    """Every option's mistake, before any checkpoint is read: one line (`UserError`), exit status 2."""
    from runtime.env import check_folder

    for flag, value in (("--threads", args.threads), ("--limit", args.limit), ("--grid", args.grid)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} is invalid; expected an integer >= 1")
    if args.split not in ("train", "val", "test"):
        raise UserError(f"--split {args.split!r} is invalid; expected train, val or test")
    if args.data != "shapes" and not args.data.startswith("flickr30k-entities:"):
        raise UserError(f"--data {args.data!r} is invalid; expected shapes or flickr30k-entities:DIR")
    if args.data.startswith("flickr30k-entities:"):
        if not args.images:
            raise UserError("--data flickr30k-entities:DIR needs --images FOLDER (the Flickr30k photos)")
        check_folder(args.data.removeprefix("flickr30k-entities:"), "--data flickr30k-entities:", must_exist=True)
        check_folder(args.images, "--images", must_exist=True)
    for flag, folder in (("--cache-dir", args.cache_dir), ("--out", args.out)):
        if folder is not None:
            check_folder(folder, flag)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: this machine has no CUDA GPU that torch can use")


def run(args) -> dict:
    from checkpoints.resolve import checkpoint_file
    from checkpoints.restore import load_trained
    from data import load_dataset
    from data.flickr30k_entities import read_entities
    from runtime.env import DEFAULT_CACHE_DIR

    from .explanation import default_grid

    check_args(args)
    results: dict = {"data": args.data, "split": args.split, "views": {}}
    for checkpoint in args.checkpoint:
        path = checkpoint_file(checkpoint)  # a file, a run or output folder, hf:OWNER/NAME or latest (checkpoints/)
        model, tokenizer, sidecar = load_trained(path, args.device)
        methods = args.methods.split(",") if args.methods else default_methods(model)
        check_methods(methods, model)
        view = model.config.view if model.config.view not in results["views"] else f"{model.config.view} ({path})"
        cache = args.cache_dir or sidecar.get("train_config", {}).get("cache_dir", DEFAULT_CACHE_DIR)
        if args.data == "shapes":
            data = sidecar.get("data", {})
            if data.get("source") != "shapes":
                raise UserError(f"{checkpoint} was not trained on the shapes set; use --data flickr30k-entities:DIR")
            splits, _ = load_dataset("shapes", cache_dir=Path(cache), split=data["split"], seed=data["seed"])
            records = getattr(splits, args.split)[: args.limit]
            extra = {}
            if args.best_head and model.config.view == "hidden":
                choice, scores = best_head(model, tokenizer, splits.val[: args.limit])
                methods = [*methods, "attention:" + choice]
                extra = {"best_head": choice, "head_accuracy_on_val": scores}
            outcome = shapes_game(model, tokenizer, records, methods, controls=not args.no_controls)
            results["views"][view] = {"checkpoint": path.name, "epoch": sidecar.get("epoch"), **outcome, **extra}
        else:
            root = Path(args.data.removeprefix("flickr30k-entities:"))
            entries = read_entities(root, args.split, args.limit)
            grid = args.grid or default_grid(model)
            training = training_images(sidecar, Path(cache).expanduser())
            results["views"][view] = flickr_game(
                model, tokenizer, entries, Path(args.images), methods, grid,
                training=training, leave_out_training=not args.include_training_images,
            )  # fmt: skip
    return results


def pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.2f}"


def shapes_table(results: dict) -> str:
    """The markdown tables of a shapes run (EXPERIMENTS.md)."""
    lines = [
        "| view | method | kind words: points right | hits / misses / ties | untrained bridge | shuffled images | "
        "colour words: points right |",
        "|---|---|---|---|---|---|---|",
    ]
    for view, r in results["views"].items():
        for method, variants in r["methods"].items():
            k = variants["trained"]["kind"]
            lines.append(
                f"| {view} | {method} | **{pct(k['accuracy'])}** | {k['hits']} / {k['misses']} / {k['ties']} | "
                f"{pct(variants.get('untrained bridge', {}).get('kind', {}).get('accuracy'))} | "
                f"{pct(variants.get('shuffled images', {}).get('kind', {}).get('accuracy'))} | "
                f"{pct(variants['trained']['colour']['accuracy'])} |"
            )
        c = r["chance"]
        lines.append(
            f"| {view} | chance: uniform over the 9 cells | {pct(c['kind']['uniform'])} | | | | {pct(c['colour']['uniform'])} |"
        )
        lines.append(
            f"| {view} | chance: uniform over the occupied cells | {pct(c['kind']['occupied'])} | | | | {pct(c['colour']['occupied'])} |"
        )
    lines += ["", "| view | method | \"where is the X?\" questions | map peak in X's cell: answers, exact match | "
              "peak elsewhere: answers, exact match | tied peak: answers, exact match |", "|---|---|---|---|---|---|"]  # fmt: skip
    for view, r in results["views"].items():
        w = r.get("where") or {}
        for method, groups in w.get("by_peak", {}).items():
            cells = [f"{groups[g]['answers']}, {pct(groups[g]['exact_match'])}" for g in ("hit", "miss", "tie")]
            lines.append(
                f"| {view} | {method} | {w['questions']} (exact match {pct(w['exact_match'])}) | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


CHANCE_LABELS = {"uniform": "uniform point / uniform cell", "centre": "centre of the view / centre cells"}


def flickr_table(results: dict) -> str:
    """The markdown table of a Flickr30k Entities run: the pixel game first (the published one), the cell game beside
    it, each over all trials and over the decidable ones, chance on the same trials; then what was not scored."""
    lines = [
        f"| view | method | pointing game: peak within {TOLERANCE} px of a box | decidable trials | "
        "peak cell's centre in a box | decidable trials |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for view, r in results["views"].items():
        grids = []
        for method, m in r["methods"].items():
            p, c = m["pixels"], m["cells"]
            lines.append(
                f"| {view} | {method} ({m['grid']}) | **{pct(p['accuracy'])}** | {pct(p['decidable']['accuracy'])} | "
                f"{pct(c['accuracy'])} | {pct(c['decidable']['accuracy'])} |"
            )
            grids += [m["grid"]] if m["grid"] not in grids else []
        pixels = r["chance"]["pixels"]
        for grid in grids:
            cells = r["chance"][f"cells {grid}"]
            for key, label in CHANCE_LABELS.items():
                p, c = pixels[key], cells[key]
                lines.append(
                    f"| {view} | chance: {label} ({grid}) | {pct(p['all'])} | {pct(p['decidable'])} "
                    f"| {pct(c['all'])} | {pct(c['decidable'])} |"
                )
        phrases = r["phrases"]
        not_scored = "; ".join(f"{reason}: {n:,}" for reason, n in phrases["not scored"].items() if n) or "none"
        notes.append(
            f"- {view}: {phrases['scored']:,} of {phrases['marked']:,} marked phrases scored; not scored: {not_scored}"
        )
        undecided = "; ".join(
            f"{name}: {t['unwinnable']:,} cannot be won, {t['unlosable']:,} cannot be lost"
            for name, t in r["chance"].items()
        )
        notes.append(
            f'- {view}: of the {phrases["scored"]:,} trials, {undecided} (counted in "all", not in "decidable")'
        )
        training = r["training split"]
        if training["known"]:
            fate = "left out" if training["left out"] else "scored (--include-training-images)"
            notes.append(f"- {view}: {training['images in it']:,} of {r['images']:,} images are in the checkpoint's "
                         f"training split ({training['how']}): {fate}")  # fmt: skip
        else:
            notes.append(f"- {view}: the checkpoint's training split is unknown ({training['how']}); no image left out")
        if r["resized photos"]:
            notes.append(f"- {view}: {r['resized photos']:,} photos are resized copies; their boxes were rescaled")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def figure(results: dict, path: Path) -> None:
    """Bars: kind words pointed right per method, trained beside the controls, chance as lines; one panel a view."""
    from matplotlib.figure import Figure  # not pyplot: no window

    views = list(results["views"].items())
    widths = [max(1, len(r["methods"])) for _, r in views]
    fig = Figure(figsize=(0.9 * sum(widths) + 2, 4.2))
    axes = fig.subplots(1, len(views), squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, (view, r) in zip(axes[0], views, strict=True):
        names = list(r["methods"])
        x = np.arange(len(names))
        for offset, variant, colour in ((-0.27, "trained", "C0"), (0, "untrained bridge", "C7"), (0.27, "shuffled images", "C1")):  # fmt: skip
            values = [r["methods"][m].get(variant, {}).get("kind", {}).get("accuracy", np.nan) for m in names]
            ax.bar(x + offset, values, 0.27, label=variant, color=colour)
        for key, style in (("uniform", ":"), ("occupied", "--")):
            ax.axhline(r["chance"]["kind"][key], color="k", linestyle=style, linewidth=1, label=f"chance ({key} cells)")
        ax.set_xticks(x, [m.replace("attention:", "attn ").replace("occlusion:", "occl ") for m in names], rotation=40, ha="right", fontsize=8)  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_title(f"{view}: {r['words']['kind']} kind words, {r['images']} images", fontsize=9)
        ax.set_ylabel("map peak in the named shape's cell")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import sys

    from runtime.files import write_text_atomically

    args = build_parser().parse_args(argv)
    try:
        check_args(args)  # --threads 0 included, before torch is asked for 0 threads
        torch.set_num_threads(args.threads)
        results = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = shapes_table(results) if args.data == "shapes" else flickr_table(results)
    print(table)
    if args.out:
        out = Path(args.out)
        write_text_atomically(out / "results.json", json.dumps(results, indent=1) + "\n")
        write_text_atomically(out / "table.md", table)
        if args.data == "shapes":
            figure(results, out / "pointing.png")
        print(f"wrote {out}/results.json, table.md" + (", pointing.png" if args.data == "shapes" else ""))
    return 0
