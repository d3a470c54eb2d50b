"""Captioning metrics: BLEU-4 and CIDEr-D, computed with the reference COCO scorers (pycocoevalcap).

A generated caption is compared with *all* the human references of its image (COCO and Flickr30k have
about 5 per image). Both metrics count n-grams (runs of n consecutive words, n = 1..4), so the text is
first tokenised the same way for hypotheses and references.

BLEU-4 (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine Translation",
https://aclanthology.org/P02-1040/)
    * Clipped n-gram precision p_n: the share of the hypothesis' n-grams that also occur in a reference,
      each n-gram counted at most as often as it occurs in any single reference (so "the the the the"
      cannot score by repeating a common word).
    * The four precisions are combined with a geometric mean: exp(mean(log p_1..p_4)). One precision of
      0 (no matching 4-gram at all) makes the whole score 0, which is why BLEU-4 is a *corpus* metric:
      pycocoevalcap sums the clipped counts over every image first, then takes the ratios.
    * Brevity penalty: precision alone rewards very short captions, so the score is multiplied by
      exp(1 - r/c) when the total hypothesis length c is shorter than the reference length r
      (pycocoevalcap uses, per image, the reference whose length is closest to the hypothesis).

CIDEr-D (Vedantam et al., 2015, "CIDEr: Consensus-based Image Description Evaluation",
https://arxiv.org/abs/1411.5726)
    * Each sentence becomes a tf-idf vector over its n-grams: term frequency in the sentence times
      log(number of images / number of images whose references contain the n-gram). N-grams that every
      caption uses ("a", "of a") weigh almost nothing; distinctive ones ("giraffe", "red kite") weigh a lot.
    * For each n = 1..4, the cosine similarity between the hypothesis vector and each reference vector
      is averaged over the references; the four values are averaged and multiplied by 10.
    * The "-D" variant (used for COCO leaderboards) adds two guards against gaming: the hypothesis'
      tf-idf weights are clipped to the reference's (min(hyp, ref)), so repeating an n-gram does not help,
      and a gaussian penalty exp(-(len_hyp - len_ref)^2 / (2 * 6^2)) punishes captions much longer or
      shorter than the reference.
    * Scores are usually between 0 and ~1.5 for good models (papers often print them x100).

IMPORTANT: CIDEr-D's document frequencies (the idf part) are computed from the references of the set
being evaluated. The score of one image therefore depends on every other image in the call, and a call
on a single image always returns 0 (log(1 image / 1 image) = 0). Call `caption_metrics` once on the
whole split -- not per batch and then averaged.

Tokenisation. The COCO evaluation code tokenises with Stanford's PTBTokenizer (Java), lowercases, and
drops the punctuation tokens in `PTBTokenizer.PUNCTUATIONS`. `tokenize_caption` is a pure-Python
approximation that needs no Java; `caption_metrics(..., use_ptb=True)` uses the real one when Java is
installed. See `tokenize_caption` for the (small) differences.

Read next: `metrics/qa.py` (scoring short answers), `evaluation/evaluate.py` (which scores a whole split at once).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from errors import UserError

# Clitics that PTBTokenizer splits off the word before them: "dog's" -> "dog 's", "don't" -> "do n't".
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'m|'ll|'d)\b")

# One token per match, tried left to right at each position.
_TOKEN = re.compile(
    r"(?:[^\W\d_]\.){2,}"  # acronyms keep their dots: "u.s.", "p.m."
    r"|n't|'(?:s|re|ve|m|ll|d)\b"  # the clitics split off above
    r"|\d+(?:[.,:]\d+)+"  # numbers with separators: "3.50", "1,000", "5:30"
    r"|\w+(?:[-/']\w+)*"  # words, hyphenated or slashed words, "o'clock": "ice-cream", "3-5"
    r"|\S"  # any other character is a token on its own: "$", "%", "(", "."
)

# Tokens PTBTokenizer's COCO wrapper removes (pycocoevalcap/tokenizer/ptbtokenizer.py, PUNCTUATIONS):
# '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
# Our regex splits multi-character ones ("--", "...", "``") into single characters, so single characters
# suffice. Brackets and double/curly quotes are what PTB turns into -LRB-, ``, '' and friends.
_PUNCTUATION = set("'`\".?!,:;-()[]{}") | set("\u201c\u201d\u2018\u2019")


def tokenize_caption(text: str) -> str:
    """Lowercase `text`, split it into PTB-style tokens, drop punctuation, and join with single spaces.

    >>> tokenize_caption("A man's dog, running in the park.")
    "a man 's dog running in the park"

    Like the Java PTBTokenizer used by the COCO evaluation code, it splits off clitics ("do n't",
    "man 's"), separates symbols ("$ 3.50", "100 %") and keeps hyphenated words, numbers and acronyms
    together ("ice-cream", "5:30", "u.s."). It agrees with the Java tool on ordinary captions; known
    differences, all rare in captions:

    * Brackets: PTB turns "(" into "-LRB-", but the COCO wrapper lowercases *before* filtering, so
      "-lrb-" / "-rrb-" survive as words there. Here brackets are removed, as PUNCTUATIONS intends.
    * Abbreviations from PTB's built-in list ("etc.", "mr.") keep their dot in PTB; here the dot goes.
    * Special cases of PTB such as "cannot" -> "can not" or "@home" kept whole are not reproduced.
    """
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _CLITIC.sub(r" \1", text)
    return " ".join(tok for tok in _TOKEN.findall(text) if tok not in _PUNCTUATION)


def _validate(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]) -> None:
    """Raise ValueError unless both dicts cover the same non-empty set of images with usable captions."""
    if not references:
        raise ValueError("caption_metrics needs at least one image; got empty references")
    missing = set(references) - set(hypotheses)
    extra = set(hypotheses) - set(references)
    if missing or extra:
        raise ValueError(
            "references and hypotheses must have the same image ids; "
            f"{len(missing)} id(s) without a hypothesis (e.g. {sorted(map(str, missing))[:3]}), "
            f"{len(extra)} without references (e.g. {sorted(map(str, extra))[:3]})"
        )
    for image_id, refs in references.items():
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{image_id!r}] must be a non-empty list of strings, got {refs!r}")
        if not isinstance(hypotheses[image_id], str):
            raise ValueError(f"hypotheses[{image_id!r}] must be a string, got {hypotheses[image_id]!r}")


def require_java() -> None:
    """Raise a one-line UserError unless `java` is on the PATH (the PTB tokenizer is a Java program).

    train.py calls this before any slow work when `--ptb` is given, so a missing Java is found in seconds, not
    after a training run or a test split's captions have been generated.
    """
    if shutil.which("java") is None:
        raise UserError(
            "--ptb needs Java on the PATH to run pycocoevalcap's PTB tokenizer (java not found); "
            "install a Java runtime (e.g. apt-get install default-jre-headless) or leave out --ptb"
        )


def _ptb_tokenize(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Tokenise with pycocoevalcap's Java PTBTokenizer, in one Java call for references and hypotheses."""
    require_java()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The tokenizer groups its output by key, so tag each key with where the captions came from.
    batch = {("ref", k): [{"caption": r} for r in refs] for k, refs in references.items()}
    batch |= {("hyp", k): [{"caption": h}] for k, h in hypotheses.items()}
    tokenized = PTBTokenizer().tokenize(batch)
    if len(tokenized) != len(batch):
        raise RuntimeError("PTBTokenizer returned fewer captions than it was given (empty captions at the end?)")
    gts = {k: tokenized[("ref", k)] for k in references}
    res = {k: tokenized[("hyp", k)] for k in references}
    return gts, res


def caption_metrics(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str], use_ptb: bool = False
) -> dict[str, float]:
    """BLEU-4 and CIDEr-D of generated captions against all references of each image.

    Args:
        references: image id -> its human captions (at least one; COCO has ~5).
        hypotheses: image id -> the one generated caption; same ids as `references`.
        use_ptb: tokenise with the Java PTBTokenizer of the official COCO evaluation (needs `java`)
            instead of the pure-Python `tokenize_caption`.

    Returns:
        {"bleu4": corpus BLEU-4 in [0, 1], "cider_d": mean CIDEr-D over images (0 to ~10, ~1 is good)}.

    Call it once on the whole split: CIDEr-D's idf weights are computed from these very references
    (see the module docstring), so scores of separate calls cannot be averaged, and one image scores 0.

    Raises:
        ValueError: the two dicts have different ids, or an image has no references.
    """
    _validate(references, hypotheses)
    if use_ptb:
        gts, res = _ptb_tokenize(references, hypotheses)
    else:
        gts = {k: [tokenize_caption(r) for r in refs] for k, refs in references.items()}
        res = {k: [tokenize_caption(hypotheses[k])] for k in references}

    # Bleu(4) returns the corpus scores for n = 1..4; BLEU-4 is the last one. verbose=0: no printing.
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    # pycocoevalcap's Cider *is* CIDEr-D: cider_scorer.py uses sigma=6.0 for the gaussian length penalty
    # (val *= e^(-delta^2 / (2 sigma^2))), clips the hypothesis weights with min(vec_hyp, vec_ref),
    # averages over n = 1..4 and over references, and multiplies by 10.
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "cider_d": float(cider)}
