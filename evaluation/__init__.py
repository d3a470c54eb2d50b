"""Evaluation: what a trained model is measured on, and how.

* `protocol`: `EvalSettings`, the one object of settings `evaluate` takes, and `EvalProtocol`, the line every
  evaluation prints and `metrics.json` records (which images, galleries, decoding, tokenisation).
* `evaluate`: `evaluate(model, records, features, tokenizer, settings)`: loss, captions (BLEU-1..4, METEOR, ROUGE-L,
  CIDEr-D), answers, retrieval (Recall/Precision@1/5) and the shuffled-image control.
* `published`: on Karpathy's test split of COCO or Flickr30k, published results beside ours.

Read next: `metrics/` for the definitions of the scores, `docs/evaluation.md` for comparing with published results.
"""

from evaluation.evaluate import EvalResult, evaluate
from evaluation.protocol import VAL_IMAGES_PER_EPOCH, EvalProtocol, EvalSettings, protocol

__all__ = ["VAL_IMAGES_PER_EPOCH", "EvalProtocol", "EvalResult", "EvalSettings", "evaluate", "protocol"]
