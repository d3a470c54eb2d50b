"""The pointing game on the shapes set, with chance and controls.

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

Read next: `explain/pointing/flickr.py` (the game on photos, against boxes drawn by people).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from bridge.vlm import fresh_bridge
from data import CAPTION_PROMPT, ImageRecord, load_image, question_prompt
from data.shapes import ANNOTATION_FILE, GRID, POSITION_ANSWERS
from errors import UserError

from .. import attention as attention_maps
from ..scoring import Tally, point, uniform_chance
from ..words import clean, split_words
from .word_maps import BATCH, features_of, methods_for, token_maps, word_map


@dataclass(frozen=True)
class Trial:
    """One word to point at: image `image`, output tokens [start, end), the cells it names (bool [rows, cols])."""

    image: int
    start: int
    end: int
    inside: np.ndarray
    group: str  # "kind" or "colour": what the word names of the shape
    shapes: int = 0  # shapes in the image (the "occupied" chance level)


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
    """The tally of `method`'s word maps over `trials` (those of `group` only, when given); maps[i] is row i's."""
    tally = Tally()
    for t in trials:
        if group is None or t.group == group:
            tally.add(word_map(method, maps[t.image], t.start, t.end).reshape(t.inside.shape), t.inside)
    return tally


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
