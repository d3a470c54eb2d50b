"""One image explained: a map over the image for every word of an output, by each method.

    explanation = explain(model, tokenizer, image, "Caption:", "a red circle on the left")
    explanation.words[2].word, explanation.words[2].maps["occlusion:background"]  # "circle", [rows, cols]
    write_explanation(explanation, Path("out/photo"))  # out/photo.png (the sheet) and out/photo.json (the maps)

The output is explained as written: it is fed back in after the prompt (teacher forcing, `explain/sequence.py`),
so the maps are those of the words the user sees, whichever decoding chose them. The methods:

- `attention:CHOICE` (`explain/attention.py`): the hidden view only, on its √N × √N token grid;
- `occlusion:FILL` (`explain/occlusion.py`): any view and encoder, on a grid of `grid` × `grid` cells (by default
  the hidden view's token grid, so both maps have the same cells, else `DEFAULT_GRID`).

Besides one map per word there is one for the whole output (`whole`): the attention of all its tokens averaged, the
drop of its whole log-probability. For a question, that is the answer's map.

caption.py `--explain OUT` calls `explain_and_write` (explain/render.py); its page draws the same maps (`explain/render.py`).

Read next: `explain/render.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from . import attention as attention_maps
from .maps import Box, token_grid, view_box
from .occlusion import DEFAULT_FILL, model_log_probs, occlusion_drops
from .sequence import check_explainable
from .words import split_words

DEFAULT_GRID = 4  # occlusion cells per side when the view gives no grid (the pooled view): 16 + 1 passes per image


@dataclass
class WordMaps:
    """One word (or the whole output) and its map under each method, [rows, cols] each."""

    word: str
    tokens: tuple[int, int]  # [start, end) in the output's tokens
    maps: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Explanation:
    """An image, the text it was explained for, and the maps."""

    image: Image.Image
    prompt: str
    output: str
    box: Box  # the part of the image the encoder sees, where every map lies (original pixels)
    methods: dict[str, str]  # name -> what it measures, in a few words
    words: list[WordMaps]
    whole: WordMaps

    def to_dict(self) -> dict:
        def maps(w: WordMaps) -> dict:
            return {name: np.asarray(m).round(6).tolist() for name, m in w.maps.items()}

        return {
            "prompt": self.prompt,
            "output": self.output,
            "image_size": list(self.image.size),
            "view_box": [round(v, 3) for v in self.box],
            "methods": self.methods,
            "words": [{"word": w.word, "tokens": list(w.tokens), "maps": maps(w)} for w in self.words],
            "whole_output": {"text": self.whole.word, "tokens": list(self.whole.tokens), "maps": maps(self.whole)},
        }


def default_grid(model) -> int:
    """Occlusion cells per side: the hidden view's token grid when it is square, else DEFAULT_GRID."""
    grid = token_grid(model.config.num_visual_tokens) if model.config.view == "hidden" else None
    return grid[0] if grid else DEFAULT_GRID


def method_descriptions(model, attention: str | None, fill: str | None, grid: int) -> dict[str, str]:
    """The methods that apply to this model, with a line each (attention needs the hidden view's token grid)."""
    methods = {}
    tokens = token_grid(model.config.num_visual_tokens)
    if attention and model.config.view == "hidden" and tokens:
        methods[f"attention:{attention}"] = (
            f"attention weights ({attention}) from the position that chose the word to the {tokens[0]}x{tokens[1]} "
            "visual tokens"
        )
    if fill:
        methods[f"occlusion:{fill}"] = (
            f"drop in the word's log-probability when a cell of a {grid}x{grid} grid is painted with the {fill}"
        )
    return methods


@torch.no_grad()
def explain(
    model,
    tokenizer,
    image: Image.Image,
    prompt: str,
    output: str,
    *,
    attention: str | None = attention_maps.DEFAULT,
    fill: str | None = DEFAULT_FILL,
    grid: int | None = None,
) -> Explanation:
    """Maps for every word of `output` (what the model wrote after `prompt` for `image`); see the module docstring.

    `attention=None` or `fill=None` leaves that method out. `tokenizer`: a `weights_loader.TextTokenizer`.
    """
    check_explainable(model)
    image = image.convert("RGB")
    grid = grid or default_grid(model)
    prompt_ids = tokenizer.encode(prompt)
    output_ids = tokenizer.encode(" " + output.strip())  # as the model reads a target (data/batches.py)
    methods = method_descriptions(model, attention, fill, grid)
    words = [WordMaps(w.text, (w.start, w.end)) for w in split_words(tokenizer, output_ids)]
    whole = WordMaps(output.strip(), (0, len(output_ids)))
    for name in methods if output_ids else ():
        if name.startswith("attention:"):  # [T, N] per token: averaged over a word's tokens
            N = model.config.num_visual_tokens
            pixels = model.encoder.preprocess(image)[None].to(model.encoder.device)
            features = model.encoder(pixels, view=model.config.view)
            (weights,) = attention_maps.attention_weights_per_row(model, features, [prompt_ids], [output_ids])
            per_token, shape = (
                attention_maps.token_maps(weights, attention, N, len(prompt_ids), len(output_ids)),
                token_grid(N),
            )
            combine = torch.Tensor.mean
        else:  # [T, cells] per token: log-probability drops add up over a word's tokens
            log_probs = model_log_probs(model, [prompt_ids], [output_ids])
            (per_token,) = occlusion_drops([image], log_probs, grid, fill, model.encoder.preprocess)
            shape, combine = (grid, grid), torch.Tensor.sum
        for w in [*words, whole]:
            w.maps[name] = combine(per_token[w.tokens[0] : w.tokens[1]], 0).reshape(shape).float().numpy()
    box = view_box(model.encoder.preprocess, *image.size)
    return Explanation(image, prompt, output.strip(), box, methods, words, whole)
