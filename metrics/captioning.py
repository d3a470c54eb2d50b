"""Captioning metrics: the numbers captioning papers report, computed by the COCO caption evaluation code itself.

Published captioning results (COCO, Flickr30k) report BLEU-1 to BLEU-4, METEOR, ROUGE-L, CIDEr-D and SPICE, computed by
the COCO caption evaluation code (pycocoevalcap, https://github.com/salaniz/pycocoevalcap) on text tokenised by its Java
PTB tokenizer. `caption_metrics` calls pycocoevalcap's own scorers, so its numbers are theirs (tests/test_metrics.py
checks that against pycocoevalcap on the same inputs). A generated caption is compared with *all* the human references
of its image (COCO and Flickr30k have 5 or more per image), and every metric below counts matches between words, so
hypotheses and references are tokenised the same way first.

BLEU-1..4 (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine Translation",
https://aclanthology.org/P02-1040/); keys "bleu1" .. "bleu4"
    * Clipped n-gram precision p_n: the share of the hypothesis' n-grams that also occur in a reference, each n-gram
      counted at most as often as it occurs in any single reference (so "the the the the" cannot score by repeating a
      common word).
    * BLEU-N combines p_1..p_N with a geometric mean: exp(mean(log p_1..p_N)). One precision of 0 (no matching 4-gram
      at all) makes BLEU-4 zero, which is why BLEU is a *corpus* metric: pycocoevalcap sums the clipped counts over
      every image first, then takes the ratios.
    * Brevity penalty: precision alone rewards very short captions, so the score is multiplied by exp(1 - r/c) when
      the total hypothesis length c is shorter than the reference length r (pycocoevalcap uses, per image, the
      reference whose length is closest to the hypothesis).

METEOR 1.5 (Banerjee & Lavie, 2005, "METEOR: An Automatic Metric for MT Evaluation with Improved Correlation with Human
Judgments", https://aclanthology.org/W05-0909/; version 1.5: Denkowski & Lavie, 2014, "Meteor Universal",
https://aclanthology.org/W14-3348/); key "meteor"
    * Aligns the hypothesis' words with each reference's: exact matches first, then matching stems, WordNet synonyms
      and entries of a paraphrase table. Unigram precision and recall of the alignment are combined in a harmonic mean
      weighted towards recall, and a fragmentation penalty lowers the score when the matched words come in many
      separate chunks (a right bag of words in the wrong order). Content words weigh more than function words.
    * A Java program (meteor-1.5.jar, inside pycocoevalcap), run as `java -Xmx2G`; it starts in seconds (loading its
      paraphrase table), so validation skips it and `--test` runs it (evaluation/protocol.py).
    * The score is *corpus-level*: METEOR sums the alignment statistics of every image and computes one score from the
      sums (its `EVAL` line), which is not the mean of the per-image scores. pycocoevalcap's `Meteor.compute_score`
      returns exactly that EVAL score.
    * Its line protocol reads one line per request with `|||` between the captions, so a newline or a `|||` inside a
      caption breaks it (an unreadable error, or a wait forever); the text it gets is cleaned first (`one_line`).

ROUGE-L (Lin, 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", https://aclanthology.org/W04-1013/);
key "rouge_l"
    * The longest common subsequence (LCS) of hypothesis and reference: words in the same order, gaps allowed.
      Precision = LCS / hypothesis length, recall = LCS / reference length, combined in an F-measure weighted towards
      recall (beta = 1.2 in pycocoevalcap), using the best precision and the best recall over the references.
    * Averaged over images.

CIDEr-D (Vedantam et al., 2015, "CIDEr: Consensus-based Image Description Evaluation", https://arxiv.org/abs/1411.5726);
key "cider_d"
    * Each sentence becomes a tf-idf vector over its n-grams: term frequency in the sentence times
      log(number of images / number of images whose references contain the n-gram). N-grams that every
      caption uses ("a", "of a") weigh almost nothing; distinctive ones ("giraffe", "red kite") weigh a lot.
    * For each n = 1..4, the cosine similarity between the hypothesis vector and each reference vector
      is averaged over the references; the four values are averaged and multiplied by 10.
    * The "-D" variant (used for COCO leaderboards) adds two guards against gaming: the hypothesis'
      tf-idf weights are clipped to the reference's (min(hyp, ref)), so repeating an n-gram does not help,
      and a gaussian penalty exp(-(len_hyp - len_ref)^2 / (2 * 6^2)) punishes captions much longer or
      shorter than the reference. pycocoevalcap's `Cider` *is* CIDEr-D: cider_scorer.py has sigma = 6.0 and the
      min(vec_hyp, vec_ref) clipping (what papers print as "CIDEr" is this).
    * Scores are usually between 0 and ~1.5 for good models (papers print them x100).

SPICE (Anderson et al., 2016, "SPICE: Semantic Propositional Image Caption Evaluation", https://arxiv.org/abs/1607.08822);
key "spice", only when asked (`spice=True`)
    * Parses every caption into a scene graph (objects, their attributes, the relations between them) with Stanford
      CoreNLP's dependency parser, and compares the graphs' tuples ("dog", "dog brown", "dog on grass"): the F-score of
      the hypothesis' tuples against the union of the references' tuples, WordNet synonyms counting as matches.
      Averaged over images. It measures what is said, not how: word order and fluency count for nothing.
    * Needs what this project cannot fetch for you: Stanford CoreNLP 3.6.0 (about 385 MB, which pycocoevalcap's
      `get_stanford_models` downloads into its own folder), Java 8 or 11 (SPICE 1.0 fails on Java 16+: its cache's
      serialiser reaches into java.lang internals), an 8 GB Java heap, and write access to pycocoevalcap's folder (its
      temporary files and parse cache go there). So `spice_problem` runs it once on two captions, with a timeout, and
      never lets pycocoevalcap download anything; when it cannot run, one line says why and how to fix it.

IMPORTANT: CIDEr-D's document frequencies (the idf part) are computed from the references of the set being evaluated,
and BLEU and METEOR are corpus scores. The score of one image therefore depends on every other image in the call (a call
on a single image always has CIDEr-D 0: log(1 image / 1 image) = 0). Call `caption_metrics` once on the whole split --
not per batch and then averaged.

Tokenisation. The COCO evaluation code tokenises with Stanford's PTBTokenizer (Java), lowercases, and drops the
punctuation tokens in `PTBTokenizer.PUNCTUATIONS`. `tokenize_caption` is a pure-Python approximation that needs no
Java; `caption_metrics(..., use_ptb=True)` uses the real one (`--ptb`). See `tokenize_caption` for the (small)
differences. Every metric, METEOR and SPICE included, scores the tokenised text, as in the COCO evaluation code.

A metric that cannot run (no Java for METEOR; SPICE's requirements) is left out of the result: its key is absent, never
None or NaN, and one line saying why goes to `notes` (or to the log). Nothing else fails.

Read next: `metrics/qa.py` (scoring short answers), `evaluation/evaluate.py` (which scores a whole split at once).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from errors import UserError

logger = logging.getLogger(__name__)

# Every key `caption_metrics` can return, in the order of the COCO evaluation code's own report.
CAPTION_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d", "spice")

# METEOR scores ~1,000 images a second once its JVM is up (~5 s to start on 2 cores); past this it is stuck.
METEOR_TIMEOUT_S = 120.0
METEOR_TIMEOUT_S_PER_IMAGE = 0.05

# A SPICE probe on two captions loads CoreNLP's parser (tens of seconds on a slow machine); past this it is stuck.
SPICE_PROBE_TIMEOUT_S = 240.0

# ------------------------------------------------------------------------------------------------------- tokenisation

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


def one_line(text: str) -> str:
    """`text` on one line: every run of whitespace, line breaks included, becomes one space; no space at either end.

    Line-based Java tools read one caption per line. pycocoevalcap's PTB wrapper replaces "\\n" only, but the Java
    tokenizer also ends a line at "\\r", "\\u2028", "\\u0085", vertical tab and form feed, and one extra line shifts
    every later caption onto the wrong image without an error. `str.split()` splits at all of those.
    """
    return " ".join(text.split())


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

    # The tokenizer groups its output by key, so tag each key with where the captions came from. One line per caption:
    # a line break inside one would shift every later caption onto the wrong key (see `one_line`).
    batch = {("ref", k): [{"caption": one_line(r)} for r in refs] for k, refs in references.items()}
    batch |= {("hyp", k): [{"caption": one_line(h)}] for k, h in hypotheses.items()}
    tokenized = PTBTokenizer().tokenize(batch)
    if any(len(tokenized.get(key, ())) != len(captions) for key, captions in batch.items()):
        raise RuntimeError("PTBTokenizer returned fewer captions than it was given")
    gts = {k: tokenized[("ref", k)] for k in references}
    res = {k: tokenized[("hyp", k)] for k in references}
    return gts, res


def _tokenize(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str], use_ptb: bool
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """pycocoevalcap's input: image id -> tokenised references, and image id -> [the tokenised hypothesis]."""
    if use_ptb:
        return _ptb_tokenize(references, hypotheses)
    gts = {k: [tokenize_caption(r) for r in refs] for k, refs in references.items()}
    res = {k: [tokenize_caption(hypotheses[k])] for k in references}
    return gts, res


# ------------------------------------------------------------------------------ BLEU, ROUGE-L, CIDEr-D: pure Python


def _ngram_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D: pycocoevalcap's Python scorers, cheap enough for every validation."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # corpus BLEU-1, -2, -3, -4; verbose=0: no printing
    rouge, _ = Rouge().compute_score(gts, res)  # mean over images
    cider, _ = Cider().compute_score(gts, res)  # CIDEr-D: sigma 6, clipped (module docstring); mean over images
    return {**{f"bleu{n}": float(bleu[n - 1]) for n in range(1, 5)}, "rouge_l": float(rouge), "cider_d": float(cider)}


# ------------------------------------------------------------------------------------------------ METEOR: one JVM


class _Meteor(Meteor):
    """pycocoevalcap's METEOR scorer, unchanged (its JVM command, its line protocol, its EVAL score), that closes.

    pycocoevalcap stops the JVM only in `__del__`, which takes the scorer's lock first: after an error inside
    `compute_score` (which leaves that lock held) it would wait forever, and if `java` cannot start at all it fails
    on the missing lock. `close` stops the JVM at a known time, waits for it (no zombie) and needs no lock.
    """

    def close(self) -> str:
        """Stop the JVM and reap it; returns what it wrote on stderr (why it failed, when it did)."""
        process: subprocess.Popen | None = getattr(self, "meteor_p", None)
        if process is None:
            return ""
        self.meteor_p = None
        try:
            process.stdin.close()
        except OSError:  # a JVM that died leaves a broken pipe behind
            pass
        process.kill()
        process.wait()
        errors = process.stderr.read().decode(errors="replace")
        process.stdout.close()
        process.stderr.close()
        return errors

    def __del__(self) -> None:
        self.close()


def _meteor_text(text: str) -> str:
    """A caption METEOR's line protocol can carry: no line break and no `|||` (its field separator).

    The same cleaning pycocoevalcap applies to hypotheses (`.replace('|||', '')`, spaces collapsed), applied to the
    references as well, which pycocoevalcap passes through untouched. On tokenised text it changes nothing: both
    tokenizers split "|||" into "| | |" and leave single spaces.
    """
    return one_line(text.replace("|||", ""))


def _java_error(stderr: str) -> str:
    """The informative line of a Java failure: the last "Caused by:" of its stack trace, else its first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    line = causes[-1].removeprefix("Caused by:").strip() if causes else (lines[0] if lines else "no error output")
    return line if len(line) <= 200 else line[:197] + "..."


def _start_meteor(report: Callable[[str], None]) -> _Meteor | None:
    """Start METEOR's JVM (it loads in the background while the other metrics run), or report why it cannot."""
    if shutil.which("java") is None:
        report(
            "METEOR skipped: java is not on the PATH (METEOR 1.5 is a Java program); install a Java runtime, "
            "e.g. apt-get install default-jre-headless"
        )
        return None
    try:
        return _Meteor()
    except OSError as error:
        report(f"METEOR skipped: java could not start ({error})")
        return None


def _meteor_score(
    scorer: _Meteor, gts: dict[str, list[str]], res: dict[str, list[str]], report: Callable[[str], None]
) -> float | None:
    """Corpus METEOR of the tokenised captions (the EVAL line), or None after reporting why it failed.

    A watchdog kills the JVM when it has not answered after METEOR_TIMEOUT_S (plus a little per image): a stuck
    protocol then ends in a reported line, not a wait forever.
    """
    clean_gts = {k: [_meteor_text(r) for r in refs] for k, refs in gts.items()}
    clean_res = {k: [_meteor_text(h) for h in hyps] for k, hyps in res.items()}
    timeout = METEOR_TIMEOUT_S + METEOR_TIMEOUT_S_PER_IMAGE * len(gts)
    timed_out, process = threading.Event(), scorer.meteor_p

    def stop() -> None:
        timed_out.set()
        process.kill()

    watchdog = threading.Timer(timeout, stop)
    watchdog.start()
    try:
        score, _ = scorer.compute_score(clean_gts, clean_res)
        return float(score)
    except (OSError, ValueError) as error:  # a dead JVM: a broken pipe, or an empty line where a number should be
        stderr = scorer.close()
        if timed_out.is_set():
            why = f"no answer within {timeout:g} s"
        else:
            why = _java_error(stderr) if stderr.strip() else str(error)
        report(f"METEOR skipped: its Java process failed ({why})")
        return None
    finally:
        watchdog.cancel()


# ------------------------------------------------------------------------------- SPICE: opt-in, probed before use


def _spice_dir() -> Path:
    """pycocoevalcap's spice/ folder: spice-1.0.jar, lib/ (where CoreNLP must be), and its tmp/ and cache/."""
    import pycocoevalcap.spice.spice as spice_module  # importing it downloads nothing; `Spice()` would

    return Path(spice_module.__file__).resolve().parent


def corenlp_installed() -> bool:
    """Whether Stanford CoreNLP 3.6.0 is where SPICE's jar looks for it (a hint for the fix, not the test itself)."""
    from pycocoevalcap.spice.get_stanford_models import JAR, SPICELIB

    return (_spice_dir() / SPICELIB / f"{JAR}.jar").exists()


def parse_java_version(text: str) -> int | None:
    """The major version in `java -version` output: 8 for 'java version "1.8.0_312"', 17 for '"17.0.15"'."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if found is None:
        return None
    major = int(found[1])
    return int(found[2] or 0) if major == 1 else major


@functools.cache
def _java_major_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_version(out.stderr + out.stdout)


def java_major_version() -> int | None:
    """The major version of the `java` on the PATH, or None without one."""
    java = shutil.which("java")
    return None if java is None else _java_major_version(java)


def spice_advice(java_major: int | None, corenlp: bool) -> str:
    """How to make SPICE run here, given the Java on the PATH and whether CoreNLP is installed."""
    steps = []
    if java_major is None:
        steps.append("install Java 8 or 11")
    elif java_major >= 16:
        steps.append(f"put Java 8 or 11 first on the PATH (SPICE 1.0 fails on Java 16+; this is Java {java_major})")
    if not corenlp:
        steps.append(
            "download Stanford CoreNLP 3.6.0 once, with network (about 385 MB, into pycocoevalcap's spice/lib): "
            'python -c "from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()"'
        )
    return "; ".join(steps) or "fix the error above (SPICE needs an 8 GB Java heap)"


def _spice_command(input_file: str, output_file: str, cache_dir: str) -> list[str]:
    """pycocoevalcap's SPICE command line (spice.py, `Spice.compute_score`), run in its spice/ folder."""
    from pycocoevalcap.spice.spice import SPICE_JAR

    return ["java", "-jar", "-Xmx8G", SPICE_JAR, input_file, "-cache", cache_dir, "-out", output_file, "-subset",
            "-silent"]  # fmt: skip


def _probe_spice(timeout: float) -> str | None:
    """Run SPICE on two captions (one image, one reference); None when it scored them, else why it could not.

    Its files, the parse cache included, go to a temporary folder: the probe writes nothing into site-packages, and it
    exercises the cache, which is where SPICE fails on Java 16+.
    """
    if shutil.which("java") is None:
        return "java is not on the PATH"
    if not os.access(_spice_dir(), os.W_OK):
        return f"pycocoevalcap's SPICE writes its files and cache under {_spice_dir()}, which is not writable"
    probe = [{"image_id": "probe", "test": "a brown dog runs on the grass", "refs": ["a dog running on green grass"]}]
    with tempfile.TemporaryDirectory(prefix="spice-probe-") as tmp:
        input_file, output_file = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        Path(input_file).write_text(json.dumps(probe))
        command = _spice_command(input_file, output_file, os.path.join(tmp, "cache"))
        try:
            run = subprocess.run(command, cwd=_spice_dir(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"a probe run on two captions did not finish within {timeout:g} s"
        except OSError as error:
            return f"java could not start ({error})"
        if run.returncode != 0:
            return f"a probe run on two captions failed ({_java_error(run.stderr)})"
        try:
            score = json.loads(Path(output_file).read_text())[0]["scores"]["All"]["f"]
        except (OSError, ValueError, LookupError, TypeError):
            score = None
        if not isinstance(score, (int, float)):
            return "a probe run on two captions wrote no score"
    return None


@functools.cache
def _spice_problem(java: str | None, timeout: float) -> str | None:
    """The probe's answer, remembered per `java` on the PATH (another PATH, another probe) and timeout."""
    return _probe_spice(timeout)


def spice_problem(timeout: float = SPICE_PROBE_TIMEOUT_S) -> str | None:
    """None when SPICE runs on this machine, else one line: why not, and how to fix it. Probed once per process.

    The probe is a real run on two captions (`_probe_spice`), not a look at which files exist: Java 16+, a missing
    CoreNLP, too little memory for the 8 GB heap or a read-only site-packages all show up the same way, as a failed
    run. It never downloads: pycocoevalcap's `Spice()` would call `get_stanford_models()`, which fetches CoreNLP when
    it is missing, so the probe runs SPICE's jar directly, and `_spice_score` skips that constructor.
    """
    problem = _spice_problem(shutil.which("java"), timeout)
    if problem is None:
        return None
    return f"SPICE skipped: {problem}. To enable it: {spice_advice(java_major_version(), corenlp_installed())}"


def _spice_score(gts: dict[str, list[str]], res: dict[str, list[str]], report: Callable[[str], None]) -> float | None:
    """pycocoevalcap's SPICE (the mean of the per-image F-scores) once the probe passed, or None after reporting."""
    from pycocoevalcap.spice.spice import Spice

    scorer = Spice.__new__(Spice)  # `Spice.__init__` only calls get_stanford_models(), which downloads when CoreNLP is
    try:  # missing; the probe has shown it is there
        score, _ = scorer.compute_score(gts, res)
        return float(score)
    except (OSError, ValueError, LookupError, subprocess.CalledProcessError) as error:
        report(f"SPICE skipped: it failed on this split after passing its probe ({error})")
        return None


# ------------------------------------------------------------------------------------------------------ all of them


def caption_metrics(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, str],
    use_ptb: bool = False,
    *,
    meteor: bool = False,
    spice: bool = False,
    notes: list[str] | None = None,
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR, SPICE when asked) of generated captions, computed by pycocoevalcap.

    Args:
        references: image id -> its human captions (at least one; COCO has ~5).
        hypotheses: image id -> the one generated caption; same ids as `references`.
        use_ptb: tokenise with the Java PTBTokenizer of the official COCO evaluation (needs `java`)
            instead of the pure-Python `tokenize_caption`.
        meteor: also METEOR 1.5 (starts a JVM with a 2 GB heap: seconds; closed before returning).
        spice: also SPICE, after a probe run shows it works here (`spice_problem`).
        notes: where the one line about a metric that cannot run goes (None: logged as a warning).

    Returns:
        {"bleu1".."bleu4", "meteor", "rouge_l", "cider_d", "spice"} (CAPTION_KEYS' order): all in [0, 1] but CIDEr-D
        (0 to ~10, ~1 is good). "meteor" and "spice" only when asked for and able to run.

    Call it once on the whole split: CIDEr-D's idf weights are computed from these very references
    (see the module docstring), so scores of separate calls cannot be averaged, and one image scores 0.

    Raises:
        ValueError: the two dicts have different ids, or an image has no references.
    """
    _validate(references, hypotheses)
    report = notes.append if notes is not None else logger.warning
    meteor_scorer = _start_meteor(report) if meteor else None  # its JVM loads while the text is tokenised and scored
    try:
        gts, res = _tokenize(references, hypotheses, use_ptb)
        scores = _ngram_scores(gts, res)
        if meteor_scorer is not None and (value := _meteor_score(meteor_scorer, gts, res, report)) is not None:
            scores["meteor"] = value
    finally:
        if meteor_scorer is not None:
            meteor_scorer.close()
    if spice:
        problem = spice_problem()
        if problem is not None:
            report(problem)
        elif (value := _spice_score(gts, res, report)) is not None:
            scores["spice"] = value
    return {key: scores[key] for key in CAPTION_KEYS if key in scores}
