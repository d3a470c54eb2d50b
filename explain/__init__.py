"""Where the model looks: a map over the image for every word it writes, and the pointing game that checks the maps.

    python caption.py photo.png --explain maps/     # maps/photo.png (a sheet of maps, word by word) + maps/photo.json
    python -m explain.pointing --checkpoint CKPT    # how often the maps point at the object a word names

One idea per file, in reading order:

- `words.py`       tokens -> words: the unit a map is drawn for;
- `sequence.py`    the teacher-forced sequence [visual][prompt][output] that both methods read;
- `maps.py`        where a map lies: a grid of cells over the part of the image the encoder sees;
- `attention.py`   method 1: the decoder's attention from the word to the visual tokens (hidden view only), recorded
                   by `tiny_decoder.model.recording_attention`; which layers and heads, and attention rollout;
- `occlusion.py`   method 2: the drop in the word's log-probability when a cell is painted over (any view);
- `explanation.py` one image, every word, every method -> an `Explanation`;
- `render.py`      overlays, the PNG sheet and JSON file, and the web page's hover view;
- `scoring.py`     the pointing game's scorer (hits, misses, ties) and chance;
- `pointing/`      the game played on the shapes set (with controls) and on Flickr30k Entities, and its command
                   line, `python -m explain.pointing`.

docs/explain.md is the guide; notebooks/06_where_it_looks.ipynb runs both methods and says what attention maps can
and cannot show; EXPERIMENTS.md ("Where the model looks") has the measured numbers.

Read next: `explain/words.py`, the first file of the list above.
"""

from .explanation import Explanation, WordMaps, explain
from .render import explain_and_write

__all__ = ["Explanation", "WordMaps", "explain", "explain_and_write"]
