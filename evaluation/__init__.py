"""Evaluation: what a trained model is measured on, and how.

* `protocol`: `EvalSettings`, the one object of settings `evaluate` takes, and `EvalProtocol`, the line every
  evaluation prints and `metrics.json` records (which images, galleries, decoding, tokenisation).
* `evaluate`: `evaluate(model, records, features, tokenizer, settings)`: loss, captions (BLEU-4, CIDEr-D),
  answers, retrieval (Recall/Precision@1/5) and the shuffled-image control.

Read next: `metrics/` for the definitions of the scores, `docs/evaluation.md` for comparing with published results.
"""

from evaluation.evaluate import EvalResult, evaluate
from evaluation.protocol import VAL_IMAGES_PER_EPOCH, EvalProtocol, EvalSettings, protocol

__all__ = ["VAL_IMAGES_PER_EPOCH", "EvalProtocol", "EvalResult", "EvalSettings", "evaluate", "protocol"]
