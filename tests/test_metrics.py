"""Tests for metrics/: captioning (BLEU-4, CIDEr-D), retrieval (Recall/Precision@K) and QA (EM, F1)."""

import shutil

import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from metrics import (
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


def _coco_scores(references: dict, hypotheses: dict) -> tuple[float, float]:
    """pycocoevalcap's own scorers on our tokenisation, without going through caption_metrics."""
    gts = {k: [tokenize_caption(r) for r in refs] for k, refs in references.items()}
    res = {k: [tokenize_caption(hypotheses[k])] for k in references}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return bleu[3], cider


def test_caption_metrics_equal_pycocoevalcap_scorers():
    scores = caption_metrics(REFERENCES, HYPOTHESES)
    bleu4, cider = _coco_scores(REFERENCES, HYPOTHESES)
    assert set(scores) == {"bleu4", "cider_d"}
    assert scores["bleu4"] == pytest.approx(bleu4, abs=1e-12)
    assert scores["cider_d"] == pytest.approx(cider, abs=1e-12)
    assert 0.0 < scores["bleu4"] < 1.0 and scores["cider_d"] > 0.0


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
