"""Drawing the maps: overlays, the PNG sheet, the JSON file, and the web page's word-by-word view.

A map is drawn where it lies (`explain/maps.py`): over the encoder's view of the image, one flat block per cell,
coloured from dark (least) to bright (most) by its own range, with the peak cell outlined in cyan. Flat blocks rather
than a smooth heat map: the method knows nothing finer than its cells, and a smooth picture would suggest it does.
Colours compare cells within one map only; the JSON file holds the raw numbers (attention weights, log-probability
drops) to compare across words and methods.

- `overlay(image, box, values)`: one picture (PIL) of a map over its image.
- `write_explanation(explanation, stem)`: stem.png, a sheet with one row of panels per method (the image, then one
  overlay per word with the word under it, then the whole output), and stem.json, the maps as arrays.
- `page_html(explanation)`: the page's view (caption.py --serve): the output's words, each showing its maps on hover
  or click (CSS only: no script runs), and the whole output's maps otherwise.

Read next: `explain/scoring.py` (measuring whether the maps are right).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from runtime.files import write_atomically

from .explanation import Explanation, WordMaps, explain
from .maps import Box, Grid, normalise
from .scoring import peak_cells

PANEL = 192  # pixels on the longer side of each drawn panel
PANELS_PER_LINE = 10
COLOURMAP = "inferno"


def _colours(values: np.ndarray) -> np.ndarray:
    """[rows, cols] -> RGB uint8 [rows, cols, 3] through COLOURMAP, by the map's own range."""
    from matplotlib import colormaps

    return (colormaps[COLOURMAP](normalise(values))[..., :3] * 255).astype(np.uint8)


def overlay(
    image: Image.Image, box: Box, values: np.ndarray | None, size: int = PANEL, alpha: float = 0.5
) -> Image.Image:
    """`image` scaled to `size` on its longer side, with the map `values` [rows, cols] blended over `box`."""
    scale = size / max(image.size)
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    small = max(image.size) < size  # a 64-pixel shapes image: keep its pixels sharp
    base = image.convert("RGB").resize((width, height), Image.NEAREST if small else Image.BICUBIC)
    if values is None:
        return base
    values = np.asarray(values, dtype=np.float64)
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    heat = Image.fromarray(_colours(values)).resize((max(1, x1 - x0), max(1, y1 - y0)), Image.NEAREST)
    region = base.crop((x0, y0, x1, y1))
    base.paste(Image.blend(region, heat, alpha), (x0, y0))
    draw = ImageDraw.Draw(base)
    grid = Grid(tuple(v * scale for v in box), *values.shape)
    for index in np.flatnonzero(peak_cells(values)):
        cx0, cy0, cx1, cy1 = grid.cell_box(int(index))
        draw.rectangle((cx0, cy0, cx1 - 1, cy1 - 1), outline=(0, 200, 255), width=2)
    return base


def sheet(explanation: Explanation) -> Image.Image:
    """The PNG sheet (see the module docstring) as one image."""
    from matplotlib.figure import Figure  # not pyplot: no window, and a notebook's plotting backend is left alone

    items: list[WordMaps | None] = [None, *explanation.words, explanation.whole]  # None: the image alone
    methods = list(explanation.methods) or [""]
    lines = math.ceil(len(items) / PANELS_PER_LINE)
    cols = min(len(items), PANELS_PER_LINE)
    fig = Figure(figsize=(1.9 * cols, 2.25 * len(methods) * lines))
    axes = fig.subplots(len(methods) * lines, cols, squeeze=False)
    for m, method in enumerate(methods):
        for i, item in enumerate(items):
            ax = axes[m * lines + i // PANELS_PER_LINE, i % PANELS_PER_LINE]
            values = None if item is None or not method else item.maps.get(method)
            ax.imshow(overlay(explanation.image, explanation.box, values))
            if item is None:
                ax.set_ylabel(method or "no method applies", fontsize=9)
                label = "(the image)"
            elif item is explanation.whole:
                label = "(whole output)"
            else:
                label = item.word
            ax.set_xlabel(label, fontsize=9)
        for i in range(len(items), lines * cols):
            axes[m * lines + i // PANELS_PER_LINE, i % PANELS_PER_LINE].set_visible(False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{explanation.prompt} {explanation.output}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return Image.open(io.BytesIO(buffer.getvalue()))


def write_explanation(explanation: Explanation, stem: Path) -> list[Path]:
    """Write stem.png (the sheet) and stem.json (the maps); return both paths. Each file is written atomically."""
    stem = Path(stem)
    png, js = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".json")
    picture = sheet(explanation)
    write_atomically(png, lambda tmp: picture.save(tmp, format="PNG"))
    write_atomically(js, lambda tmp: tmp.write_text(json.dumps(explanation.to_dict(), indent=1) + "\n"))
    return [png, js]


def _data_uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(explanation: Explanation, item: WordMaps) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(method)} map of {html.escape(item.word)}" '
        f'src="{_data_uri(overlay(explanation.image, explanation.box, item.maps[method], size=160))}">'
        f"<figcaption>{html.escape(method)}</figcaption></figure>"
        for method in explanation.methods
        if method in item.maps
    )


PAGE_CSS = """
.explain { position: relative; }
.explain-words { line-height: 2.2em; }
.explain-word { padding: 2px 5px; margin: 0 1px; border-radius: 4px; cursor: pointer; background: #eef; }
.explain-word:hover, .explain-word:focus { background: #ccf; outline: none; }
.explain-maps { display: flex; gap: 8px; margin-top: 6px; }
.explain-maps figure { margin: 0; font-size: 12px; text-align: center; }
.explain-word .explain-maps { display: none; position: absolute; left: 0; right: 0; top: 2.4em; background: white; z-index: 2; }
.explain-word:hover .explain-maps, .explain-word:focus .explain-maps { display: flex; }
"""


def page_html(explanation: Explanation) -> str:
    """The page's word-by-word view: hover or click (focus) a word to see its maps; the whole output's otherwise."""
    words = "".join(
        f'<span class="explain-word" tabindex="0" data-word="{i}">{html.escape(w.word)}'
        f'<span class="explain-maps">{_figures(explanation, w)}</span></span> '
        for i, w in enumerate(explanation.words)
    )
    whole = _figures(explanation, explanation.whole)
    return (
        f'<style>{PAGE_CSS}</style><div class="explain"><div class="explain-words">{words}</div>'
        f'<div class="explain-maps explain-whole">{whole}</div>'
        f'<p style="font-size:12px">Hover or click a word to see where it drew on; below the words: the whole '
        f"output. {'; '.join(html.escape(f'{k}: {v}') for k, v in explanation.methods.items())}.</p></div>"
    )


def page_view(model, tokenizer, image: Image.Image, prompt: str, output: str) -> str:
    """`page_html` of `explain` with the default methods: what caption.py's page shows under its output."""
    from .explanation import explain

    return page_html(explain(model, tokenizer, image, prompt, output))


def explain_and_write(model, tokenizer, image: Image.Image, prompt: str, output: str, stem: Path) -> list[Path]:
    """`explain` (explain/explanation.py) with the default methods, then `write_explanation` to stem.png and stem.json; the paths written."""
    return write_explanation(explain(model, tokenizer, image, prompt, output), Path(stem))
