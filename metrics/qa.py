"""Question-answering metrics: exact match and token F1, as in SQuAD's official evaluation script.

A generated answer rarely matches the gold answer character for character ("The red one." vs "red"), so
both answers are normalised first: lowercase, drop punctuation, drop the articles a/an/the, collapse
whitespace (Rajpurkar et al., 2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text",
https://arxiv.org/abs/1606.05250; script: https://rajpurkar.github.io/SQuAD-explorer/, evaluate-v1.1.py).

* Exact match (EM): 1 if the normalised prediction equals a normalised gold answer, else 0.
* Token F1: treat both as bags of words; precision = shared words / predicted words, recall = shared
  words / gold words, F1 = their harmonic mean. Partial answers get partial credit.

Several gold answers may be valid (annotators disagree), so each question takes the *maximum* over its
golds. Scores are fractions in [0, 1] (SQuAD reports them x100).

Read next: `metrics/retrieval.py` (the third task's scores), `evaluation/evaluate.py` (where answers are scored).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, remove punctuation, remove articles, collapse whitespace (SQuAD's order of steps).

    >>> normalize_answer("The  Red-Bus!")
    'redbus'
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)  # "red-bus" -> "redbus", as SQuAD does
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _check_golds(golds: Sequence[str]) -> None:
    if isinstance(golds, str) or not golds:
        raise ValueError(f"golds must be a non-empty list of answer strings, got {golds!r}")


def exact_match(pred: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised `pred` equals any normalised gold answer, else 0.0."""
    _check_golds(golds)
    pred_norm = normalize_answer(pred)
    return float(any(pred_norm == normalize_answer(g) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        # An empty answer (after normalisation) is right only when the gold is empty too (SQuAD v2 rule).
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)  # multiset intersection: min count per word
    n_same = sum(common.values())
    if n_same == 0:
        return 0.0
    precision = n_same / len(pred_tokens)
    recall = n_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, golds: Sequence[str]) -> float:
    """Bag-of-words F1 between the normalised `pred` and each gold answer; the best one counts."""
    _check_golds(golds)
    pred_tokens = normalize_answer(pred).split()
    return max(_f1(pred_tokens, normalize_answer(g).split()) for g in golds)


def qa_metrics(preds: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and token F1 over questions; `golds[i]` are the valid answers to question i."""
    if len(preds) != len(golds):
        raise ValueError(f"got {len(preds)} predictions for {len(golds)} questions; need one per question")
    if not preds:
        raise ValueError("qa_metrics needs at least one question")
    n = len(preds)
    return {
        "exact_match": sum(exact_match(p, g) for p, g in zip(preds, golds, strict=True)) / n,
        "token_f1": sum(token_f1(p, g) for p, g in zip(preds, golds, strict=True)) / n,
    }
