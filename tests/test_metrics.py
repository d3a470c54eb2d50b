"""Tests for metrics/: captioning (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE), retrieval (Recall/Precision@K) and QA
(EM, F1); and evaluation/published.py, the published rows `--test` prints beside ours."""

import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

import metrics.captioning as captioning
from evaluation.protocol import EvalSettings, caption_metric_names, protocol
from evaluation.published import COLUMNS, PUBLISHED, comparison_table, format_table, published_rows
from metrics import (
    CAPTION_KEYS,
    caption_metrics,
    exact_match,
    gallery_indices,
    mean_over_galleries,
    normalize_answer,
    qa_metrics,
    retrieval_metrics,
    token_f1,
    tokenize_caption,
)
from metrics.captioning import one_line

# ---------------------------------------------------------------------------------------------- captioning

REFERENCES = {
    "img0": [
        "A man riding a wave on top of a surfboard.",
        "A surfer rides a large wave in the ocean.",
        "A person on a surfboard riding a wave.",
        "A man surfing on a big blue wave.",
        "Surfer in a wetsuit catching a wave.",
    ],
    "img1": [
        "Two dogs play with a frisbee in the grass!",
        "Two dogs running on a lawn with a frisbee.",
        "A pair of dogs chasing a frisbee in a park.",
        "Dogs playing fetch with a red frisbee.",
        "Two brown dogs fight over a frisbee.",
    ],
    "img2": [
        "A plate of food with rice, beans and broccoli.",
        "A close-up of a dinner plate with vegetables.",
        "Rice and beans served with steamed broccoli.",
        "A white plate holding rice, broccoli and beans.",
        "A healthy meal of rice and vegetables on a plate.",
    ],
    "img3": [
        "A red double-decker bus parked at a bus stop.",
        "The bus is parked at the bus stop; it's red.",
        "A big red bus waiting by the curb.",
        "A double decker bus on a city street.",
        "People boarding a red bus at a stop.",
    ],
    "img4": [
        "A giraffe standing next to a tree in a zoo.",
        "A tall giraffe eating leaves from a tree.",
        "A giraffe in an enclosure near some trees.",
        "One giraffe reaching up to a tree branch.",
        "A giraffe stands beside a leafy tree.",
    ],
    "img5": [
        "A cat sleeping on a laptop keyboard.",
        "There's a cat sitting on the laptop's keyboard.",
        "A gray cat lying on an open laptop.",
        "A kitten napping on top of a computer.",
        "A cat curled up on a notebook computer.",
    ],
}

HYPOTHESES = {
    "img0": "A man riding a wave on top of a surfboard.",  # identical to a reference
    "img1": "Two dogs running on a lawn with a frisbee.",  # identical to a reference
    "img2": "a plate with rice and broccoli",  # close paraphrase
    "img3": "a giraffe eating leaves",  # unrelated (belongs to img4)
    "img4": "a tall giraffe near a tree",  # partial match
    "img5": "",  # the model produced nothing
}


CHEAP_KEYS = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d"]  # every evaluation's, in the COCO order


def _coco_scores(gts: dict, res: dict) -> dict[str, float]:
    """pycocoevalcap's own Python scorers on tokenised text, without going through caption_metrics."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "rouge_l": rouge, "cider_d": cider}


def test_caption_metrics_equal_pycocoevalcap_scorers():
    scores = caption_metrics(REFERENCES, HYPOTHESES)
    gts = {k: [tokenize_caption(r) for r in refs] for k, refs in REFERENCES.items()}
    res = {k: [tokenize_caption(HYPOTHESES[k])] for k in REFERENCES}
    assert list(scores) == CHEAP_KEYS  # no METEOR or SPICE unless asked for
    assert scores == _coco_scores(gts, res)  # exactly: the same scorers on the same tokens
    assert 0.0 < scores["bleu4"] < scores["bleu1"] < 1.0 and 0.0 < scores["rouge_l"] < 1.0 and scores["cider_d"] > 0.0


def test_perfect_captions_beat_shuffled_ones():
    ids = list(REFERENCES)
    perfect = {k: REFERENCES[k][0] for k in ids}
    # Each image gets the first reference of the next image: fluent, but about the wrong picture.
    shuffled = {k: REFERENCES[ids[(i + 1) % len(ids)]][0] for i, k in enumerate(ids)}
    good, bad = caption_metrics(REFERENCES, perfect), caption_metrics(REFERENCES, shuffled)
    # Every hypothesis equals one of its references: all n-grams match, no brevity penalty -> BLEU-4 = 1.
    assert good["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert good["bleu4"] > bad["bleu4"]
    assert good["cider_d"] > 2 * bad["cider_d"]


def test_cider_needs_the_whole_split():
    # One image alone: every n-gram occurs in 1 of 1 images, idf = log(1/1) = 0, so CIDEr-D is 0 even for
    # a perfect caption. This is why caption_metrics must be called once on the whole split.
    one = {"img0": REFERENCES["img0"]}
    assert caption_metrics(one, {"img0": REFERENCES["img0"][0]})["cider_d"] == 0.0


def test_caption_metrics_validates_inputs():
    with pytest.raises(ValueError, match="same image ids"):
        caption_metrics(REFERENCES, {"img0": "a man"})
    with pytest.raises(ValueError, match="same image ids"):
        caption_metrics({"img0": ["a man"]}, {"img0": "a man", "other": "a dog"})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"img0": [], "img1": ["a dog"]}, {"img0": "a man", "img1": "a dog"})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"img0": "a man"}, {"img0": "a man"})  # a string, not a list of strings
    with pytest.raises(ValueError, match="must be a string"):
        caption_metrics({"img0": ["a man"]}, {"img0": ["a man"]})
    with pytest.raises(ValueError, match="at least one image"):
        caption_metrics({}, {})


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man's dog, running in the park.", "a man 's dog running in the park"),
        ("It's a black-and-white photo... isn't it?", "it 's a black-and-white photo is n't it"),
        ("Price is $3.50 at 5:30 p.m. in the U.S.", "price is $ 3.50 at 5:30 p.m. in the u.s."),
        ('Two "happy" kids (ages 3-5) eat ice-cream!', "two happy kids ages 3-5 eat ice-cream"),
        ("The cat; on a mat: sleeps -- quietly.", "the cat on a mat sleeps quietly"),
        ("Kids' toys   on\nthe floor", "kids toys on the floor"),
        ("don't WON'T can't", "do n't wo n't ca n't"),
        ("...", ""),
    ],
)
def test_tokenize_caption_examples(text, tokens):
    assert tokenize_caption(text) == tokens


@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed (PTBTokenizer needs it)")
def test_tokenize_caption_matches_java_ptbtokenizer_on_ordinary_captions():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = [c for refs in REFERENCES.values() for c in refs] + [h for h in HYPOTHESES.values() if h]
    java = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert [tokenize_caption(c) for c in captions] == [java[i][0] for i in range(len(captions))]
    assert caption_metrics(REFERENCES, HYPOTHESES, use_ptb=True) == pytest.approx(
        caption_metrics(REFERENCES, HYPOTHESES)
    )


# ------------------------------------------------------------- the COCO caption evaluation's metrics, on its Java code

# COCO-like references as they come: trailing spaces, line breaks inside captions (real COCO captions have both), "|||"
# (METEOR's field separator), and 5, 6 and 7 references per image. Hypotheses with the same troubles, and an empty one.
# No "\r": pycocoevalcap's own pipeline, the reference here, mis-assigns captions after one (see
# test_line_breaks_do_not_shift_captions_onto_other_images).
COCO_REFERENCES = {
    "391895": [
        "A man with a red helmet on a small moped on a dirt road. ",
        "Man riding a motor bike on a dirt road on the countryside.",
        "A man riding on the back of a motorcycle.",
        "A dirt path with a young person on a motor bike, hills in the background. ",
        "A man in a red shirt and a red hat is on a motorcycle on a hill side.",
    ],
    "522418": [
        "A woman wearing a net on her head cutting a cake. ",
        "A woman cutting a large white sheet cake.\n",
        "A woman wearing a hair net cutting a large sheet cake.",
        "there is a woman that is cutting a white cake",
        "A woman marking a cake with the back of a chef's\nknife. ",
        "A woman in a kitchen cuts a big cake ||| with a knife.",
    ],
    "184613": [
        "A child holding a flowered umbrella and petting a yak.",
        "A young man holding an umbrella next to a herd of cattle.",
        "a young boy barefoot holding an umbrella touching the horn of a cow",
        "A young boy with an umbrella who is touching the horn of a cow.",
        "A boy holding an umbrella while standing next to livestock.",
        "A boy ||| with an umbrella and a cow",
        "Two cows and a boy\nunder an umbrella.",
    ],
    "318219": [
        "A young boy standing in front of a computer keyboard.",
        "a little boy wearing headphones and looking at a computer monitor",
        "He is listening intently to the computer at school.",
        "A young boy stares up at the computer monitor.",
        "a young kid with head phones on using a computer ",
    ],
    "554625": [
        "A man riding a wave on top of a surfboard.",
        "A surfer rides a large wave in the ocean.\n",
        "A person on a surfboard riding a wave.",
        "A man surfing on a big blue wave.",
        "Surfer in a wetsuit catching a wave.",
        "a surfer ||| on a wave",
    ],
    "397133": [
        "A man is in a kitchen making pizzas.",
        "Man in apron standing on front of oven with pans and bakeware",
        "A baker is working in the kitchen rolling dough.",
        "A person standing by a stove in a kitchen.",
        "A table with pies being made and a person standing near a wall with pots and pans hanging on the wall.",
        "A man cooking in a  kitchen  ",
        "Two pizzas\nand a cook.",
    ],
}
COCO_HYPOTHESES = {
    "391895": "a man riding a motorcycle on a dirt road",
    "522418": "a woman cutting a cake ||| with a knife",
    "184613": "a boy holding an umbrella\nnext to a cow  ",
    "318219": "",
    "554625": "A man riding a wave on top of a surfboard.",
    "397133": "a man ||| ||| standing in a kitchen making pizza",
}


def _java_children(exclude: set[int]) -> list[str]:
    """This process' child processes named java (state included: "Z" is a zombie), other than `exclude`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            name, fields = rest.rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        state, ppid = fields.split()[:2]
        if int(ppid) == os.getpid() and name == "java" and int(pid) not in exclude:
            found.append(f"{pid} {state}")
    return found


@pytest.fixture(scope="module")
def coco_evaluation():
    """caption_metrics with the Java PTB tokenizer and METEOR, next to pycocoevalcap's own pipeline on the same inputs:
    its PTBTokenizer, then Bleu(4), Meteor(), Rouge(), Cider() (COCOEvalCap without SPICE, which always downloads).
    Two JVMs start here, at the same time (each takes ~5 s to load METEOR's paraphrase table), and nowhere else."""
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    reference_meteor = Meteor()  # starts loading now, while ours runs
    notes: list[str] = []
    ours = caption_metrics(COCO_REFERENCES, COCO_HYPOTHESES, use_ptb=True, meteor=True, notes=notes)
    left_behind = _java_children(exclude={reference_meteor.meteor_p.pid}) if Path("/proc/self").exists() else []

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in COCO_REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": h}] for k, h in COCO_HYPOTHESES.items()})
    reference = _coco_scores(gts, res)
    reference["meteor"], meteor_per_image = reference_meteor.compute_score(gts, res)
    reference_meteor.meteor_p.kill()
    reference_meteor.meteor_p.wait()
    return {"ours": ours, "reference": reference, "meteor_per_image": meteor_per_image, "notes": notes,
            "left_behind": left_behind, "tokenized": (gts, res)}  # fmt: skip


needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed (PTB tokenizer, METEOR)")


@needs_java
def test_every_metric_equals_pycocoevalcap_on_its_java_tokens(coco_evaluation):
    ours, reference = coco_evaluation["ours"], coco_evaluation["reference"]
    assert list(ours) == ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d"]
    for key in ours:  # exactly equal, not only to the 4 decimals papers print
        assert ours[key] == pytest.approx(reference[key], rel=0, abs=0), key
        assert round(ours[key], 4) == round(reference[key], 4)
    assert coco_evaluation["notes"] == []
    assert 0.0 < ours["meteor"] < 1.0 and 0.0 < ours["bleu4"] < ours["bleu1"]


def test_the_fixture_really_has_the_troubles_it_claims():
    counts = sorted({len(refs) for refs in COCO_REFERENCES.values()})
    captions = [c for refs in COCO_REFERENCES.values() for c in refs] + list(COCO_HYPOTHESES.values())
    assert counts == [5, 6, 7]
    assert any("\n" in c for c in captions) and any("|||" in c for c in captions)
    assert any(c.endswith(" ") for c in captions) and not any("\r" in c for c in captions)  # see the test after next


@needs_java
def test_meteor_is_the_corpus_eval_score_not_a_mean_over_images(coco_evaluation):
    per_image = coco_evaluation["meteor_per_image"]
    assert len(per_image) == len(COCO_REFERENCES)
    # METEOR sums the alignment statistics of all images and scores the sums (its EVAL line): not the mean of the
    # per-image scores, which is what a per-image loop would report.
    mean = sum(per_image) / len(per_image)
    assert abs(coco_evaluation["ours"]["meteor"] - mean) > 1e-3


@needs_java
def test_no_java_process_is_left_after_scoring(coco_evaluation):
    assert coco_evaluation["left_behind"] == []  # no running JVM, no zombie


@needs_java
def test_what_meteor_gets_has_no_line_break_and_no_separator(coco_evaluation):
    gts, res = coco_evaluation["tokenized"]
    # both tokenizers split "|||" into "| | |", so the cleaning changes nothing on what caption_metrics passes ...
    for text in [c for refs in gts.values() for c in refs] + [h for hyps in res.values() for h in hyps]:
        assert captioning._meteor_text(text) == text and "\n" not in text
    # ... and it makes raw text safe for METEOR's line protocol, as pycocoevalcap does for hypotheses only
    assert captioning._meteor_text("a dog |||runs\non the\r\ngrass \u2028 ") == "a dog runs on the grass"


def test_one_line_removes_every_kind_of_line_break():
    assert one_line("  a\nb\rc\r\nd\u2028e\u2029f\x85g\x0bh\x0ci  j  ") == "a b c d e f g h i j"


@needs_java
def test_line_breaks_do_not_shift_captions_onto_other_images():
    # pycocoevalcap's PTB wrapper replaces "\n" only; the Java tokenizer also breaks lines at "\r", "\u2028", ...: one
    # extra line moves every later caption to the wrong image, silently. caption_metrics puts each caption on one line.
    broken = {k: [r.replace(" ", "\r", 1).replace(" a ", "\u2028a ") for r in refs] for k, refs in REFERENCES.items()}
    assert broken != REFERENCES
    assert caption_metrics(broken, HYPOTHESES, use_ptb=True) == caption_metrics(REFERENCES, HYPOTHESES, use_ptb=True)


def test_without_java_meteor_and_spice_are_one_line_each_and_the_rest_is_scored(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    notes: list[str] = []
    scores = caption_metrics(REFERENCES, HYPOTHESES, meteor=True, spice=True, notes=notes)
    assert list(scores) == CHEAP_KEYS and scores == caption_metrics(REFERENCES, HYPOTHESES)
    assert len(notes) == 2 and all("\n" not in line for line in notes)
    assert notes[0].startswith("METEOR skipped: java is not on the PATH")
    assert notes[1].startswith("SPICE skipped: java is not on the PATH. To enable it: install Java 8 or 11")
    # without a list for the notes, the same lines go to the log, once each
    with caplog.at_level("WARNING", logger="metrics.captioning"):
        caption_metrics(REFERENCES, HYPOTHESES, meteor=True)
    assert [r.getMessage() for r in caplog.records] == [notes[0]]


@pytest.fixture
def fresh_spice_probe():
    """A new probe, whatever earlier tests cached (the probe runs once per process)."""
    captioning._spice_problem.cache_clear()
    yield
    captioning._spice_problem.cache_clear()


@needs_java
@pytest.mark.skipif(captioning.corenlp_installed(), reason="SPICE's CoreNLP is installed here: the probe may pass")
def test_spice_that_cannot_run_is_one_line_and_never_downloads(fresh_spice_probe, monkeypatch):
    import pycocoevalcap.spice.get_stanford_models as models

    def no_download(*args, **kwargs):
        raise AssertionError(f"SPICE tried to download {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_download)
    monkeypatch.setattr(models, "urlretrieve", no_download)
    spice_dir = captioning._spice_dir()
    before = sorted(p.name for p in spice_dir.iterdir())
    notes: list[str] = []
    started = time.monotonic()
    scores = caption_metrics(REFERENCES, HYPOTHESES, spice=True, notes=notes)
    assert time.monotonic() - started < 60  # the probe fails fast: CoreNLP's classes are missing
    assert "spice" not in scores and list(scores) == CHEAP_KEYS
    assert len(notes) == 1 and "\n" not in notes[0] and notes[0].startswith("SPICE skipped: a probe run")
    assert "get_stanford_models" in notes[0]  # how to fix it
    assert sorted(p.name for p in spice_dir.iterdir()) == before  # nothing written into site-packages


@needs_java
def test_a_stuck_spice_probe_is_stopped_by_its_timeout(fresh_spice_probe, monkeypatch):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(captioning, "_spice_command", lambda *files: sleeper)
    started = time.monotonic()
    problem = captioning.spice_problem(timeout=0.5)
    assert time.monotonic() - started < 10
    assert problem.startswith("SPICE skipped: a probe run on two captions did not finish within 0.5 s. To enable it:")


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_312"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_parse_java_version(output, major):
    assert captioning.parse_java_version(output) == major


def test_spice_advice_names_each_missing_piece():
    assert "Java 8 or 11" in captioning.spice_advice(17, corenlp=True) and "get_stanford_models" not in (
        captioning.spice_advice(17, corenlp=True)
    )
    assert captioning.spice_advice(11, corenlp=False).startswith("download Stanford CoreNLP 3.6.0")
    assert captioning.spice_advice(None, corenlp=False).startswith("install Java 8 or 11; download")
    assert captioning.spice_advice(8, corenlp=True).startswith("fix the error above")  # all there: see the error


def test_caption_keys_are_the_coco_evaluation_codes_metrics_in_its_order():
    assert CAPTION_KEYS == ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d", "spice")


def test_which_metrics_run_where_is_in_the_protocol():
    class Record:
        captions = ["a dog"] * 5

    assert caption_metric_names(EvalSettings()) == "BLEU-1..4/ROUGE-L/CIDEr-D"  # validation: the cheap ones
    assert caption_metric_names(EvalSettings(meteor=True)) == "BLEU-1..4/METEOR/ROUGE-L/CIDEr-D"  # --test
    assert caption_metric_names(EvalSettings(meteor=True, spice=True)).endswith("/CIDEr-D/SPICE")  # --test --spice
    line = protocol(EvalSettings(meteor=True, ptb=True), "karpathy test", [Record()] * 3).describe()
    assert "BLEU-1..4/METEOR/ROUGE-L/CIDEr-D on the Java PTB tokenizer" in line


# ------------------------------------------------------------------------------ published results beside ours


def test_published_rows_quote_the_papers():
    clipcap_transformer, clipcap_mlp = published_rows("coco", "karpathy")
    assert dict(clipcap_transformer.scores) == {"bleu4": 33.53, "meteor": 27.45, "cider_d": 113.08, "spice": 21.05}
    assert dict(clipcap_mlp.scores) == {"bleu4": 32.15, "meteor": 27.1, "cider_d": 108.35, "spice": 20.12}
    assert "31.0" in clipcap_transformer.note and "105.7" in clipcap_transformer.note  # the public reproduction
    lu, vlp = published_rows("flickr30k", "karpathy")
    assert dict(lu.scores) == {"bleu4": 25.1, "cider_d": 53.1}
    assert dict(vlp.scores) == {"bleu4": 30.1, "meteor": 23.0, "cider_d": 67.4, "spice": 17.0}
    assert vlp.decoding == "beam 5"
    for row in (*PUBLISHED["coco"], *PUBLISHED["flickr30k"]):
        assert row.trains and row.decoding and row.evaluation and row.conditions and row.source
        assert set(row.scores) <= {key for key, _ in COLUMNS}
    # only Karpathy's test images are the papers'; other data has no published rows
    assert published_rows("flickr30k", "random") == () and published_rows("", "karpathy") == ()


def _table(dataset: str, split: str, metrics: dict, beams: int = 3):
    class Record:
        captions = ["a dog"] * 5

    test = protocol(EvalSettings(beams=beams, ptb=True, meteor=True), f"{split} test", [Record()] * 1000)
    return comparison_table(dataset, split, metrics, test, encoder="vit", decoder="Qwen/Qwen3-0.6B-Base", top_k=3,
                            decoder_blocks=28, train_images=29_000, epochs=3)  # fmt: skip


def test_our_row_is_x100_under_the_published_rows_and_labelled():
    metrics = {"bleu1": 0.7, "bleu4": 0.25374, "meteor": 0.22119, "rouge_l": 0.5, "cider_d": 0.61236, "loss": 2.0}
    table = _table("flickr30k", "karpathy", metrics)
    json.dumps(table)  # goes into metrics.json as it is
    assert table["scale"] == 100 and table["columns"] == ["bleu4", "meteor", "cider_d", "spice"]
    *published, ours = table["rows"]
    assert [row["model"] for row in published] == [row.model for row in PUBLISHED["flickr30k"]]
    assert ours["scores"] == {"bleu4": 25.37, "meteor": 22.12, "cider_d": 61.24}  # x100, no SPICE: not asked for
    assert ours["decoding"] == "beam 3" and "Java PTB tokenizer" in ours["evaluation"]
    assert "top 3 of 28 decoder blocks" in ours["trains"]
    assert ours["conditions"] == "frozen timm ViT-B/16 + Qwen3-0.6B-Base; 29,000 training images; 3 epochs"
    text = format_table(table)
    lines = text.splitlines()
    assert lines[0] == "flickr30k, karpathy test split: published results and ours (x100)"
    assert lines[1].split() == ["decoding", "B@4", "METEOR", "CIDEr", "SPICE"]
    assert lines[2].split()[-5:] == ["3", "25.1", "-", "53.1", "-"]  # "beam 3": Lu et al.'s row, as published
    assert lines[4].split()[-6:] == ["beam", "3", "25.37", "22.12", "61.24", "-"]  # ours, last
    assert lines[-1].startswith("note: the rows differ in encoder, language model, training data and epochs")
    assert _table("coco", "karpathy", metrics)["rows"][0]["model"].startswith("ClipCap")


def test_no_table_without_published_rows_on_the_same_images():
    assert _table("flickr30k", "random", {"bleu4": 0.2, "cider_d": 0.5}) is None
    assert _table("", "karpathy", {"bleu4": 0.2, "cider_d": 0.5}) is None  # the shapes set, a synthetic set, ...


# ----------------------------------------------------------------------------------------------- retrieval

# 3 images x 6 captions; captions 0,1 describe image 0, captions 2,3 image 1, captions 4,5 image 2.
SCORES = torch.tensor(
    [
        # c0    c1    c2    c3    c4    c5
        [0.90, 0.10, 0.80, 0.05, 0.30, 0.40],  # image 0 ranks c0 c2 c5 c4 c1 c3
        [0.50, 0.60, 0.70, 0.10, 0.20, 0.30],  # image 1 ranks c2 c1 c0 c5 c4 c3
        [0.60, 0.20, 0.30, 0.40, 0.10, 0.50],  # image 2 ranks c0 c5 c3 c2 c1 c4
    ]
)
CAPTION_IMAGE = torch.tensor([0, 0, 1, 1, 2, 2])


def test_retrieval_metrics_by_hand():
    m = retrieval_metrics(SCORES, CAPTION_IMAGE, ks=(1, 2))
    # Image -> text, own captions in the top 1 / top 2:
    #   image 0: top1 c0 (own)   top2 c0 c2 -> 1 own
    #   image 1: top1 c2 (own)   top2 c2 c1 -> 1 own
    #   image 2: top1 c0 (wrong) top2 c0 c5 -> 1 own
    assert m["i2t_recall@1"] == pytest.approx(2 / 3)
    assert m["i2t_precision@1"] == pytest.approx(2 / 3)
    assert m["i2t_recall@2"] == pytest.approx(1.0)
    assert m["i2t_precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2) / 3)
    # Text -> image, rank of the right image in each caption's column:
    #   c0 [.9 .5 .6] -> img0 rank 1;  c1 [.1 .6 .2] -> img0 rank 3;  c2 [.8 .7 .3] -> img1 rank 2
    #   c3 [.05 .1 .4] -> img1 rank 2; c4 [.3 .2 .1] -> img2 rank 3;  c5 [.4 .3 .5] -> img2 rank 1
    assert m["t2i_recall@1"] == pytest.approx(2 / 6)
    assert m["t2i_precision@1"] == pytest.approx(2 / 6)
    assert m["t2i_recall@2"] == pytest.approx(4 / 6)
    assert m["t2i_precision@2"] == pytest.approx(4 / 6 / 2)  # one right image per caption: Recall / K
    assert (m["n_images"], m["n_captions"]) == (3.0, 6.0)


def test_precision_counts_every_own_caption_in_the_top_k():
    m = retrieval_metrics(SCORES, CAPTION_IMAGE, ks=(5,))
    # Top 5 captions: image 0 -> c0 c2 c5 c4 c1 (2 own), image 1 -> c2 c1 c0 c5 c4 (1 own),
    # image 2 -> c0 c5 c3 c2 c1 (1 own).
    assert m["i2t_recall@5"] == pytest.approx(1.0)
    assert m["i2t_precision@5"] == pytest.approx((2 / 5 + 1 / 5 + 1 / 5) / 3)


def test_k_larger_than_the_gallery_is_clamped():
    m = retrieval_metrics(SCORES, CAPTION_IMAGE, ks=(10,))
    # i2t looks at all 6 captions (2 own each): precision 2/6. t2i looks at all 3 images: precision 1/3.
    assert m["i2t_recall@10"] == 1.0 and m["i2t_precision@10"] == pytest.approx(2 / 6)
    assert m["t2i_recall@10"] == 1.0 and m["t2i_precision@10"] == pytest.approx(1 / 3)


def test_ties_are_broken_against_the_model():
    # A model that scores every pair the same must not get credit for an arbitrary order.
    m = retrieval_metrics(torch.zeros(3, 6), CAPTION_IMAGE, ks=(1, 4, 5))
    assert m["i2t_recall@1"] == 0.0 and m["t2i_recall@1"] == 0.0
    assert m["i2t_recall@4"] == 0.0  # the 4 other images' captions come first
    assert m["i2t_recall@5"] == 1.0 and m["i2t_precision@5"] == pytest.approx(1 / 5)


def test_retrieval_metrics_validates_inputs():
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(torch.zeros(6), CAPTION_IMAGE)
    with pytest.raises(ValueError, match="shape"):
        retrieval_metrics(SCORES, CAPTION_IMAGE[:5])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        retrieval_metrics(SCORES, torch.tensor([0, 0, 1, 1, 2, 3]))
    with pytest.raises(ValueError, match="image\\(s\\) \\[2\\] have none"):
        retrieval_metrics(SCORES, torch.tensor([0, 0, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.full((3, 6), float("nan")), CAPTION_IMAGE)
    with pytest.raises(ValueError, match=">= 1"):
        retrieval_metrics(SCORES, CAPTION_IMAGE, ks=(0,))


def test_gallery_indices():
    assert gallery_indices(250, 100) == [range(0, 100), range(100, 200), range(200, 250)]
    assert gallery_indices(100, 100) == [range(0, 100)]
    assert gallery_indices(3) == [range(0, 3)]
    with pytest.raises(ValueError):
        gallery_indices(0, 100)
    with pytest.raises(ValueError):
        gallery_indices(10, 0)


def test_mean_over_galleries_weights_by_queries():
    a = {"i2t_recall@1": 1.0, "t2i_recall@1": 0.5, "n_images": 3.0, "n_captions": 6.0}
    b = {"i2t_recall@1": 0.0, "t2i_recall@1": 1.0, "n_images": 1.0, "n_captions": 2.0}
    mean = mean_over_galleries([a, b])
    assert mean["i2t_recall@1"] == pytest.approx((3 * 1.0 + 1 * 0.0) / 4)  # weighted by images
    assert mean["t2i_recall@1"] == pytest.approx((6 * 0.5 + 2 * 1.0) / 8)  # weighted by captions
    assert (mean["n_images"], mean["n_captions"]) == (4.0, 8.0)
    with pytest.raises(ValueError):
        mean_over_galleries([])
    with pytest.raises(ValueError, match="same keys"):
        mean_over_galleries([a, {"n_images": 1.0}])


def test_galleries_end_to_end():
    # 5 images with 2 captions each; every image scores its own captions highest -> perfect in any gallery.
    caption_image = torch.arange(5).repeat_interleave(2)  # [10]
    scores = (caption_image[None, :] == torch.arange(5)[:, None]).float()  # [5, 10]
    results = []
    for g in gallery_indices(5, gallery_size=2):  # [0, 1], [2, 3], [4]
        keep = (caption_image >= g.start) & (caption_image < g.stop)
        results.append(retrieval_metrics(scores[g.start : g.stop][:, keep], caption_image[keep] - g.start))
    mean = mean_over_galleries(results)
    assert mean["i2t_recall@1"] == 1.0 and mean["t2i_recall@1"] == 1.0
    assert mean["t2i_precision@5"] == pytest.approx((4 * 1 / 2 + 4 * 1 / 2 + 2 * 1 / 1) / 10)  # K clamped
    assert (mean["n_images"], mean["n_captions"]) == (5.0, 10.0)


# ---------------------------------------------------------------------------------------------------- QA


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("The Cat!", "cat"),
        ("  an   apple  pie. ", "apple pie"),
        ("theater", "theater"),  # "the" only as a whole word
        ("A-ha", "aha"),  # punctuation is deleted, not replaced by a space
        ("Two dogs, a ball & the sea", "two dogs ball sea"),
    ],
)
def test_normalize_answer(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_exact_match():
    assert exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("tower", ["Eiffel Tower"]) == 0.0
    assert exact_match("two", ["2", "Two"]) == 1.0  # any gold answer counts
    with pytest.raises(ValueError):
        exact_match("two", "two")  # golds must be a list


def test_token_f1_by_hand():
    # pred [red bus stop] vs gold [big red bus]: 2 shared, P = 2/3, R = 2/3 -> F1 = 2/3
    assert token_f1("red bus stop", ["the big red bus"]) == pytest.approx(2 / 3)
    # pred [dog dog] vs gold [dog]: 1 shared (counts are clipped), P = 1/2, R = 1 -> F1 = 2/3
    assert token_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
    assert token_f1("red bus", ["blue car", "a red bus"]) == 1.0  # the best gold counts
    assert token_f1("cat", ["dog"]) == 0.0
    assert token_f1("", ["the"]) == 1.0  # both empty after normalisation
    assert token_f1("the", ["cat"]) == 0.0


def test_qa_metrics():
    m = qa_metrics(["Paris", "the red one", "42"], [["paris"], ["red", "crimson"], ["forty-two"]])
    # EM: 1, 0, 0.  F1: 1; [red one] vs [red] -> P 1/2 R 1 -> 2/3; 0.
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["token_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError, match="one per question"):
        qa_metrics(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        qa_metrics([], [])
