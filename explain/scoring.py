"""The pointing game: does a word's map peak inside the object the word names?

Zhang et al. 2016 ("Top-down Neural Attention by Excitation Backprop", https://arxiv.org/abs/1608.00507) score a
saliency map by one question: is its maximum inside the object? The accuracy is hits / (hits + misses). It needs
no threshold and no calibration of the map, so attention weights, log-probability drops and anything else can be
compared on the same footing, and so can chance.

Here a map is a grid of cells (`explain/maps.py`) and the object is a set of cells: on the shapes set, the grid cell
of the shape the word names (`data/shapes.py` records it in each image's `scene`); on Flickr30k Entities, the cells
whose centre lies inside one of the boxes of the phrase's entity. How a map is scored, exactly:

- The peak is the set of cells whose value is within `PEAK_TOLERANCE` × (max - min) of the maximum, so that a map
  with several equal maxima does not hit or miss by the order of its cells.
- **hit**: every peak cell is inside the object; **miss**: none is; **tie**: some are, some are not. A tie scores
  the share of the peak cells that are inside, which is what breaking the tie uniformly at random scores on
  average. A constant map (all cells tied) therefore scores the object's share of the cells: chance.
- accuracy = (hits + the ties' shares) / words.

Chance levels, computed from the same words:
- `uniform`: a peak at a random cell; it hits with the object's share of the cells (1/9 for one cell of 3 × 3).
- `occupied` (the shapes set): a peak at a random cell that holds a shape, 1 / (shapes in the image).

`python -m explain.pointing` runs the game on the demo model or on Flickr30k Entities (`explain/pointing/`).

Read next: `explain/pointing/__init__.py` (the game, played on the shapes set and on Flickr30k Entities).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PEAK_TOLERANCE = 1e-6
OUTCOMES = ("hit", "miss", "tie")


def peak_cells(values: np.ndarray) -> np.ndarray:
    """bool mask of the map's maximum cells (within PEAK_TOLERANCE of its range; all cells of a constant map)."""
    values = np.asarray(values, dtype=np.float64)
    high, low = values.max(), values.min()
    return values >= high - PEAK_TOLERANCE * (high - low)


def point(values: np.ndarray, inside: np.ndarray) -> tuple[str, float]:
    """Score one map: ("hit" | "miss" | "tie", credit in [0, 1]). `inside`: bool, the object's cells (same shape)."""
    peak = peak_cells(values)
    inside = np.asarray(inside, dtype=bool)
    if peak.shape != inside.shape:
        raise ValueError(f"map of shape {peak.shape} scored against an object mask of shape {inside.shape}")
    hits = int((peak & inside).sum())
    total = int(peak.sum())
    if hits == total:
        return "hit", 1.0
    if hits == 0:
        return "miss", 0.0
    return "tie", hits / total


@dataclass
class Tally:
    """Running counts of one method's pointing game."""

    hits: int = 0
    misses: int = 0
    ties: int = 0
    credit: float = 0.0  # hits + the ties' shares
    outcomes: list[str] = field(default_factory=list, repr=False)

    def add(self, values: np.ndarray, inside: np.ndarray) -> str:
        outcome, credit = point(values, inside)
        self.hits += outcome == "hit"
        self.misses += outcome == "miss"
        self.ties += outcome == "tie"
        self.credit += credit
        self.outcomes.append(outcome)
        return outcome

    @property
    def words(self) -> int:
        return self.hits + self.misses + self.ties

    @property
    def accuracy(self) -> float:
        return self.credit / self.words if self.words else float("nan")

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "words": self.words,
            "hits": self.hits,
            "misses": self.misses,
            "ties": self.ties,
        }


def uniform_chance(inside: np.ndarray) -> float:
    """The chance that a peak at a uniformly random cell is inside the object: its share of the cells."""
    inside = np.asarray(inside, dtype=bool)
    return float(inside.sum() / inside.size)
