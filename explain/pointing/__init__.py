"""The pointing game: how often the map of a word points at the thing the word names, on a trained model.

    python -m explain.pointing --checkpoint RUN/3_tiny_top2.safetensors                      # the demo model
    python -m explain.pointing --checkpoint HIDDEN.safetensors --checkpoint POOLED.safetensors --best-head \\
        --out experiments/results/pointing                                                    # EXPERIMENTS.md
    python -m explain.pointing --checkpoint CKPT --data flickr30k-entities:ENTITIES_DIR --images FLICKR_IMAGES

The scorer (hits, misses, ties, and chance) is `explain/scoring.py`; the game is played here, one part a file:

- `word_maps.py`  the maps of many rows at once (BATCH rows a pass) and a word's map from its tokens' maps;
- `shapes.py`     the game on the shapes set, with chance and the controls (an untrained bridge, shuffled images);
- `flickr.py`     the game on Flickr30k Entities: the published pixel game and the cell game, chance on the same trials;
- `report.py`     the markdown tables and the figure of the results;
- `__main__.py`   the command line, `python -m explain.pointing`.

docs/explain.md describes the game; EXPERIMENTS.md ("Where the model looks") has the measured numbers.

Read next: `explain/pointing/word_maps.py`, the first file of the list above.
"""
