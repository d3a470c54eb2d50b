"""Evaluation metrics for the three tasks of this project.

* `captioning`: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE of generated captions, by the COCO caption evaluation
  code's own scorers (pycocoevalcap); METEOR and SPICE only when asked, and SPICE only where a probe run works.
* `retrieval`: Recall@K / Precision@K for image->text and text->image retrieval from a score matrix.
* `qa`: SQuAD-style exact match and token F1 for short answers.

Every function returns plain Python floats in a flat dict, ready for `training.tracking.Tracker.log`.

Read next: `metrics/captioning.py` (what each captioning metric measures), then `evaluation/evaluate.py` (which uses
all three).
"""

from metrics.captioning import CAPTION_KEYS, caption_metrics, spice_problem, tokenize_caption
from metrics.qa import exact_match, normalize_answer, qa_metrics, token_f1
from metrics.retrieval import gallery_indices, mean_over_galleries, retrieval_metrics

__all__ = [
    "CAPTION_KEYS",
    "caption_metrics",
    "exact_match",
    "gallery_indices",
    "mean_over_galleries",
    "normalize_answer",
    "qa_metrics",
    "retrieval_metrics",
    "spice_problem",
    "token_f1",
    "tokenize_caption",
]
