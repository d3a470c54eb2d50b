"""Occlusion maps: how much less likely a word becomes when one cell of the image is hidden.

Zeiler & Fergus 2014 ("Visualizing and Understanding Convolutional Networks", https://arxiv.org/abs/1311.2901) slid
a grey square over the image and watched the class score. Here the score is the log-probability of each word the
model wrote, teacher-forced: for every cell of a grid over the encoder's view of the image (`explain/maps.py`),

    map[cell] = log p(word | image) - log p(word | image with that cell painted over)

A word's log-probability is the sum of its tokens' (`explain/words.py`), so its drop is the sum of theirs. A cell
the word depends on gives a large drop; a cell it ignores gives about 0; a negative value means hiding the cell made
the word *more* likely. Unlike attention, this measures an effect on the output, and works for any encoder and view
(the pooled view included, where no visual token has a place). It asks a counterfactual the model never saw in
training, though: an image with a hole in it.

What a cell is painted with (`fill`) matters, because "hidden" must not read as something else:
- `background`: the image's background colour, the median of its border pixels. On the shapes set this is an empty
  cell, the most natural "nothing here". On photos the border is rarely uniform.
- `mean`: the colour the encoder's preprocessing normalises to zero (its `Normalize` mean: ImageNet's grey-brown for
  ViT-B/16, mid grey for the demo's tiny ViT), the encoder's own "average input".
- `blur`: the same cell from a strongly blurred copy of the image (Gaussian, radius half a cell): colour stays, shape
  and texture go (Fong & Vedaldi 2017, https://arxiv.org/abs/1704.03296).

Cost: one image needs rows × cols + 1 teacher-forced passes (encoder and decoder), all in one batch. At the demo's
size (3 × 3 cells, a 3-block decoder of width 128) that is milliseconds; EXPERIMENTS.md gives the cost at
Qwen3-0.6B's size.

Read next: `explain/scoring.py` (does the map point at the object?).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from tiny_decoder.model import target_log_probs

from .maps import Grid, view_box
from .sequence import teacher_forced

FILLS = ("background", "mean", "blur")
DEFAULT_FILL = "background"

# (images, image_indices) -> token log-probabilities [len(images), T_max]: of the targets of `image_indices`, each
# given the matching image. `model_log_probs` builds one from a VisionLanguageModel.
LogProbs = Callable[[Sequence[Image.Image], Sequence[int]], torch.Tensor]


def fill_image(image: Image.Image, fill: str, preprocess: object = None, cell_size: float = 16.0) -> Image.Image:
    """An image of `image`'s size to paint cells from (see `fill` in the module docstring)."""
    image = image.convert("RGB")
    if fill == "background":
        pixels = np.asarray(image)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # [2W + 2H, 3]
        return Image.new("RGB", image.size, tuple(int(v) for v in np.median(border, axis=0)))
    if fill == "mean":
        steps = list(getattr(getattr(preprocess, "transform", preprocess), "transforms", []))
        normalize = next((s for s in steps if type(s).__name__ == "Normalize"), None)
        mean = [float(m) for m in normalize.mean] if normalize is not None else [0.5, 0.5, 0.5]
        return Image.new("RGB", image.size, tuple(round(255 * m) for m in mean))
    if fill == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=max(1.0, cell_size / 2)))
    raise ValueError(f"unknown occlusion fill {fill!r}; expected one of {', '.join(FILLS)}")


def occluded_copies(image: Image.Image, grid: Grid, fill: Image.Image) -> list[Image.Image]:
    """One copy of `image` per cell of `grid` (row-major), with that cell pasted from `fill`."""
    copies = []
    for i in range(grid.rows * grid.cols):
        x0, y0, x1, y1 = (round(v) for v in grid.cell_box(i))
        copy = image.convert("RGB")  # a new image every time
        copy.paste(fill.crop((x0, y0, x1, y1)), (x0, y0))
        copies.append(copy)
    return copies


def model_log_probs(model, prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> LogProbs:
    """A `LogProbs` for a VisionLanguageModel: the targets' token log-probabilities, teacher-forced."""

    @torch.no_grad()
    def log_probs(images: Sequence[Image.Image], indices: Sequence[int]) -> torch.Tensor:
        pixels = torch.stack([model.encoder.preprocess(im) for im in images])  # [n, 3, H, W]
        features = model.encoder(pixels.to(model.encoder.device), view=model.config.view)
        return token_log_probs(model, features, [prompts[i] for i in indices], [targets[i] for i in indices])

    return log_probs


@torch.no_grad()
def token_log_probs(
    model, features: torch.Tensor, prompts: Sequence[list[int]], targets: Sequence[list[int]]
) -> torch.Tensor:
    """log p(target token j | image, prompt, target tokens before j) for each row: [B, T_max], 0 past a row's end."""
    N = model.config.num_visual_tokens
    embeds, input_ids = teacher_forced(model, features, prompts, targets)  # [B, N + W, d], [B, W]
    hidden = model.decoder.hidden_states(inputs_embeds=embeds)  # [B, N + W, d]
    keep = torch.zeros_like(embeds[..., 0], dtype=torch.bool)  # [B, N + W]: the positions that predict a target
    for b, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
        keep[b, N + len(prompt) - 1 : N + len(prompt) + len(target) - 1] = True
    rows = len(prompts)
    sequence = torch.cat([input_ids.new_zeros(rows, N), input_ids], dim=1)  # [B, N + W]: ids after visuals
    next_tokens = torch.cat([sequence[:, 1:], sequence[:, :1]], dim=1)  # [B, N + W]: what position q predicts
    logp = target_log_probs(hidden[keep], model.decoder.lm_head.weight, next_tokens[keep])  # [M], row by row
    out = torch.zeros(rows, max(len(t) for t in targets), device=logp.device)
    out[keep.nonzero(as_tuple=True)[0], _positions(targets, out.device)] = logp.float()
    return out.cpu()


def _positions(targets: Sequence[list[int]], device: torch.device) -> torch.Tensor:
    """0, 1, ..., len(t) - 1 for each target in turn: where each kept log-probability goes in its row."""
    return torch.cat([torch.arange(len(t), device=device) for t in targets])


def occlusion_drops(
    images: Sequence[Image.Image],
    log_probs: LogProbs,
    grid_size: int,
    fill: str = DEFAULT_FILL,
    preprocess: object = None,
    batch_size: int = 64,
) -> list[torch.Tensor]:
    """The drop of every target token's log-probability when each cell is painted over: [T_max, cells] per image.

    Every image gives grid_size² + 1 inputs (itself and its occluded copies); they are scored `batch_size` at a time
    across images, so a test set runs in a few large batches instead of many small ones.
    """
    inputs: list[tuple[int, Image.Image]] = []
    for i, image in enumerate(images):
        grid = Grid(view_box(preprocess, *image.size), grid_size, grid_size)
        cell = min(image.size) / grid_size
        inputs.append((i, image))
        inputs.extend((i, copy) for copy in occluded_copies(image, grid, fill_image(image, fill, preprocess, cell)))
    scores = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        scores.extend(log_probs([im for _, im in chunk], [i for i, _ in chunk]))
    width = max(len(row) for row in scores)  # chunks may differ in their longest target
    scores = [torch.nn.functional.pad(row, (0, width - len(row))) for row in scores]
    per_image = grid_size * grid_size + 1
    drops = []
    for i in range(len(images)):
        own = torch.stack(scores[i * per_image : (i + 1) * per_image])  # [cells + 1, T_max]
        drops.append((own[0:1] - own[1:]).T)  # [T_max, cells]
    return drops
