"""`python -m explain.pointing`: the pointing game on a trained model, from the command line.

The options and the games (the shapes set with chance and controls; Flickr30k Entities) are `explain/games.py`;
the scorer (hits, misses, ties) is `explain/scoring.py`.

Read next: `explain/games.py`.
"""

import sys

from explain.games import main

if __name__ == "__main__":
    sys.exit(main())
