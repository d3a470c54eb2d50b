"""Evaluation metrics for the three tasks of this project.

* `captioning`: BLEU-4 and CIDEr-D of generated captions (pycocoevalcap's reference scorers).
* `retrieval`: Recall@K / Precision@K for image->text and text->image retrieval from a score matrix.
* `qa`: SQuAD-style exact match and token F1 for short answers.

Every function returns plain Python floats in a flat dict, ready for `training.tracking.Tracker.log`.

Read next: `metrics/captioning.py` (BLEU-4 and CIDEr-D), then `evaluation/evaluate.py` (which uses all three).
"""

from metrics.captioning import caption_metrics, tokenize_caption
from metrics.qa import exact_match, normalize_answer, qa_metrics, token_f1
from metrics.retrieval import gallery_indices, mean_over_galleries, retrieval_metrics

__all__ = [
    "caption_metrics",
    "exact_match",
    "gallery_indices",
    "mean_over_galleries",
    "normalize_answer",
    "qa_metrics",
    "retrieval_metrics",
    "token_f1",
    "tokenize_caption",
]
