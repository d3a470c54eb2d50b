"""Where the model looks (explain/): the recorded attention weights, words, occlusion, the pointing game's scorer,
Flickr30k Entities, the sheet and JSON, and caption.py --explain (its page in a headless browser is tested in
tests/test_page.py, with the page's other browser tests).

Most tests build a tiny random model in a second; the last ones use the session's short demo run (`trained_demo`
in conftest.py), as tests/test_caption.py does.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_qwen3_config
from PIL import Image, ImageDraw

from bridge import VisionLanguageModel, VLMConfig
from data.flickr30k_entities import Phrase, head_word, parse_sentence, plain_text, read_entities
from demo.tokenizer import train_bpe_tokenizer
from errors import UserError
from explain import attention, explain
from explain.maps import Grid, view_box
from explain.occlusion import FILLS, model_log_probs, occlusion_drops, token_log_probs
from explain.pointing import flickr
from explain.pointing.flickr import count, decidable, flickr_game, flickr_rows, pixel_credit, targets, training_images
from explain.pointing.report import flickr_table
from explain.pointing.shapes import derangement
from explain.render import page_html, write_explanation
from explain.scoring import Tally, point
from explain.words import split_words
from tiny_decoder import Qwen3ForCausalLM
from tiny_decoder.model import apply_rope, rope_cos_sin, rope_inverse_frequencies
from tiny_decoder.model import recording_attention as recording
from vision import build_encoder
from weights_loader import TextTokenizer

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------- the recorded attention


def by_hand(layer, x: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) of one attention layer from its input x [B, T, d], written out: [B, H, T, T]."""
    attn = layer.self_attn
    B, T, _ = x.shape
    H, KV, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    h = layer.input_layernorm(x)
    q = attn.q_norm(attn.q_proj(h).view(B, T, H, hd)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(h).view(B, T, KV, hd)).transpose(1, 2)
    cos, sin = rope_cos_sin(positions, rope_inverse_frequencies(hd, 10_000.0), x.dtype)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    weights = torch.zeros(B, H, T, T)
    for b in range(B):
        for head in range(H):
            key = k[b, head // (H // KV)]  # grouped-query attention: query head h reads key head h // group
            scores = q[b, head] @ key.T / hd**0.5  # [T, T]
            scores = scores.masked_fill(~keep[b], float("-inf"))
            weights[b, head] = scores.softmax(-1)
    return weights


@pytest.mark.parametrize("padded", [False, True])
def test_recorded_attention_equals_softmax_of_q_and_k_by_hand(padded):
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(tiny_qwen3_config(rope_theta=10_000.0)).eval()
    ids = torch.randint(0, 64, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    if padded:
        mask[1, :3] = 0  # left padding: row 1 starts at position 3
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for layer in model.model.layers]
    with torch.no_grad(), recording(model) as recorded:
        model(ids, attention_mask=mask if padded else None)
    for hook in hooks:
        hook.remove()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = torch.ones(7, 7).tril().bool()[None] & mask[:, None, :].bool()  # causal, and no padding key
    keep = keep | ~keep.any(-1, keepdim=True)  # a padding query sees everything (its output is never used)
    assert len(recorded) == 2 and all(len(calls) == 1 for calls in recorded)
    for layer, x, (weights,) in zip(model.model.layers, inputs, recorded, strict=True):
        assert weights.shape == (2, 4, 7, 7)
        torch.testing.assert_close(weights, by_hand(layer, x, positions, keep), atol=1e-6, rtol=1e-5)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 7))


def test_the_forward_pass_is_unchanged_by_recording_and_bit_identical_when_not_asked():
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(tiny_qwen3_config()).eval()
    ids = torch.randint(0, 64, (3, 9))
    with torch.no_grad():
        before = model(ids)
        with recording(model) as recorded:
            during = model(ids)  # computed from the recorded weights: weights @ v
        after = model(ids)
    assert torch.equal(before, after)  # bit-identical: not asked, nothing changes
    torch.testing.assert_close(during, before, atol=1e-5, rtol=1e-5)  # the weights give the fused kernel's output
    assert all(layer.self_attn.recorded is None for layer in model.model.layers)  # the option is off again
    assert [w[0].shape for w in recorded] == [(3, 4, 9, 9)] * 2


def test_recording_during_cached_generation_and_gradients_reach_the_weights():
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(tiny_qwen3_config()).eval()
    ids = torch.randint(0, 64, (1, 5))
    with torch.no_grad(), recording(model) as recorded:
        model.generate(ids, max_new_tokens=3)
    assert [w.shape[-2:] for w in recorded[0]] == [(5, 5), (1, 6), (1, 7)]  # prefill, then one query per step
    with recording(model) as recorded:
        logits = model(ids)
        (grad,) = torch.autograd.grad(logits[0, -1, 3], [recorded[-1][0]])
    assert grad.shape == (1, 4, 5, 5) and grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ a tiny model


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer): a random tiny VLM on the tiny ViT's 3x3 grid, and a BPE trained on a few phrases."""
    texts = ["Caption:", " a red circle and a blue star", " a green square on the left", " top left"] * 20
    bpe = train_bpe_tokenizer(texts, vocab_size=300)
    tokenizer = TextTokenizer(bpe, eos_id=bpe.token_to_id("<|endoftext|>"), pad_id=bpe.token_to_id("<|endoftext|>"))
    torch.manual_seed(0)
    decoder = Qwen3ForCausalLM(tiny_qwen3_config(vocab_size=tokenizer.vocab_size))
    config = VLMConfig(encoder="tiny", encoder_weights="none", view="hidden", num_visual_tokens=9, top_k=1)
    return VisionLanguageModel(config, build_encoder("tiny", "none"), decoder).eval(), tokenizer


def shapes_image(cell: tuple[int, int] = (1, 2), size: int = 48) -> Image.Image:
    """A light image with one red square inside grid cell (row, col) of 3 x 3."""
    image = Image.new("RGB", (size, size), (240, 240, 235))
    c = size // 3
    ImageDraw.Draw(image).rectangle(
        (cell[1] * c + 3, cell[0] * c + 3, cell[1] * c + c - 4, cell[0] * c + c - 4), fill=(220, 30, 30)
    )
    return image


def test_words_group_tokens_at_spaces(tiny):
    _, tokenizer = tiny
    ids = tokenizer.encode(" a red circle, and a bluish star")
    words = split_words(tokenizer, ids)
    assert [w.text for w in words] == ["a", "red", "circle,", "and", "a", "bluish", "star"]
    assert [w.key for w in words][2] == "circle"
    assert words[0].start == 0 and words[-1].end == len(ids)
    assert all(a.end == b.start for a, b in zip(words, words[1:], strict=False))
    assert "".join(tokenizer.decode(ids[w.start : w.end]) for w in words).split() == [w.text for w in words]


def test_token_log_probs_agree_with_the_models_sequence_likelihood(tiny):
    model, tokenizer = tiny
    prompts = [tokenizer.encode("Caption:"), tokenizer.encode("Caption:")]
    targets = [tokenizer.encode(" a red circle"), tokenizer.encode(" top left and a blue star")]
    features = model.encoder(torch.stack([model.encoder.preprocess(shapes_image())] * 2), view="hidden")
    per_token = token_log_probs(model, features, prompts, targets)  # [2, T_max]
    width = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    input_ids = torch.zeros(2, width, dtype=torch.long)
    labels = torch.full((2, width), -100)
    for b, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        input_ids[b, : len(p) + len(t)] = torch.tensor(p + t)
        labels[b, len(p) : len(p) + len(t)] = torch.tensor(t)
    means = model.sequence_log_likelihood(input_ids, labels, features=features)
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.float)
    torch.testing.assert_close(per_token.sum(1) / lengths, means, atol=1e-5, rtol=1e-5)
    assert per_token[0, len(targets[0]) :].eq(0).all()


def test_attention_token_maps_read_the_predicting_position():
    L, H, N, P, T = 2, 2, 4, 2, 3
    S = N + P + T
    weights = torch.zeros(L, H, S, S)
    weights[..., torch.arange(S), torch.arange(S)] = 1.0  # everyone attends to itself ...
    for j in range(T):  # ... except the query that chooses target token j, which reads visual token j + 1
        q = N + P + j - 1
        weights[:, :, q] = 0
        weights[:, :, q, j + 1] = 1.0
    maps = attention.token_maps(weights, "mean", N, P, T)
    assert maps.argmax(-1).tolist() == [1, 2, 3]
    torch.testing.assert_close(attention.rollout(torch.eye(S).expand(L, H, S, S)), torch.eye(S))
    assert attention.reduce(weights, "head:1.0").shape == (S, S)
    for bad in ("layer:5", "head:2.0", "head:x", "first"):
        with pytest.raises(ValueError):
            attention.reduce(weights, bad)


# ------------------------------------------------------------------------------------------------ occlusion


def test_occlusion_of_the_only_shape_lowers_its_word_most_on_a_constructed_case():
    """The 'model' here scores the word by how red the image is: only hiding the red square's cell may matter."""
    image = shapes_image(cell=(1, 2), size=60)

    def log_probs(images, indices):
        red = [((np.asarray(im)[..., 0] > 200) & (np.asarray(im)[..., 1] < 80)).mean() for im in images]
        return torch.tensor([[np.log(r + 1e-3), 0.0] for r in red])  # [n, 2]: the word, and a token it ignores

    for fill in FILLS:
        (drops,) = occlusion_drops([image], log_probs, 3, fill)  # [2, 9]
        assert drops.shape == (2, 9)
        assert int(drops[0].argmax()) == 1 * 3 + 2, fill
        assert drops[0, 5] > 1.0 and drops[0].abs().sort().values[-2] < 1e-6, fill  # the other cells change nothing
        assert drops[1].abs().max() == 0
    small = occlusion_drops([image, image], log_probs, 3, "background", batch_size=3)
    torch.testing.assert_close(small[1], occlusion_drops([image], log_probs, 3, "background")[0])


def test_geometry_of_a_resize_and_centre_crop():
    from torchvision import transforms

    vit_like = transforms.Compose([transforms.Resize(248), transforms.CenterCrop(224), transforms.ToTensor()])
    x0, y0, x1, y1 = view_box(vit_like, 500, 375)  # 375 -> 248: scale 0.6613; 330.7 wide, 53.3 px cut each side
    scale = 248 / 375
    assert (x0, x1) == pytest.approx(((330.667 - 224) / 2 / scale, (330.667 + 224) / 2 / scale), abs=0.01)
    assert (y0, y1) == pytest.approx((12 / scale, 236 / scale), abs=0.01)
    assert view_box(object(), 64, 64) == (0, 0, 64, 64)
    grid = Grid((0, 0, 90, 90), 3, 3)
    assert grid.cell_box(5) == (60, 30, 90, 60)
    assert grid.inside([(55, 25, 100, 50)]).nonzero() == (np.array([1]), np.array([2]))


# ------------------------------------------------------------------------------------------------ the pointing game


def test_pointing_scorer_counts_hits_misses_and_ties_as_documented():
    inside = np.zeros((3, 3), dtype=bool)
    inside[1, 2] = True
    miss = np.zeros((3, 3))
    miss[0, 0] = 1.0
    assert point(miss, inside) == ("miss", 0.0)
    hit = np.zeros((3, 3))
    hit[1, 2] = 1.0
    assert point(hit, inside) == ("hit", 1.0)
    tie = np.zeros((3, 3))
    tie[1, 2] = tie[0, 0] = 2.0
    assert point(tie, inside) == ("tie", 0.5)
    assert point(np.full((3, 3), 0.3), inside) == ("tie", pytest.approx(1 / 9))  # a flat map scores chance
    assert point(hit + 1e-9 * np.eye(3), inside)[0] == "hit"  # within the tolerance of nothing else
    tally = Tally()
    for values in (hit, tie, -hit):
        tally.add(values, inside)
    assert (tally.hits, tally.misses, tally.ties, tally.words) == (1, 1, 1, 3)
    assert tally.accuracy == pytest.approx(1.5 / 3)
    with pytest.raises(ValueError):
        point(np.zeros((2, 2)), inside)
    order = derangement(7)
    assert sorted(order) == list(range(7)) and all(i != j for i, j in enumerate(order))


# ------------------------------------------------------------------------------------------------ Flickr30k Entities

# A sample in the release's own format (its README's example file, 1000092795, has the same quirks): Penn Treebank
# tokens ("Two young , White males", "does n't", " 's", a final " ."), an object naming two entities, an entity with
# several boxes, <scene> and <nobndbox> both written, an entity that is both, notvisual phrases of entity 0.
SENTENCES = """[/EN#1/people A man] in [/EN#2/clothing a red shirt] holds [/EN#3/other a cup of coffee] under [/EN#10/other a kite] .
[/EN#1/people/other The man] stands in front of [/EN#4/scene a wall] with [/EN#0/notvisual his thoughts] and [/EN#9/other a ball] .
[/EN#1/people The man 's] [/EN#2/clothing shirt] does n't hide [/EN#5/bodyparts his shadow] , and [/EN#6/scene the street] is " busy " .
[/EN#7/people Two young , White males] sit on [/EN#8/other a type of bench] outside on [/EN#11/scene the grass] ; [/EN#7/people the two] smile .
[/EN#1/people Someone] took [/EN#12/other this picture] .
"""
WIDTH, HEIGHT = (
    160,
    90,
)  # the tiny ViT sees x in [35, 125): 3 x 3 cells of 30 px, centres x 50, 80, 110 and y 15, 45, 75


def voc_object(names: list[str], box: tuple[int, int, int, int] | None = None, scene: int = 0, hidden: int = 0) -> str:
    """One <object> as the release writes it (tabs; 1-based, inclusive pixel coordinates)."""
    lines = ["\t<object>"] + [f"\t\t<name>{n}</name>" for n in names]
    if box:
        lines += ["\t\t<bndbox>"] + [
            f"\t\t\t<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        ]
        lines += ["\t\t</bndbox>"]
    else:
        lines += [f"\t\t<scene>{scene}</scene>", f"\t\t<nobndbox>{hidden}</nobndbox>"]
    return "\n".join([*lines, "\t</object>"])


ANNOTATION = "\n".join([
    "<annotation>",
    "\t<filename>42.jpg</filename>",
    f"\t<size>\n\t\t<width>{WIDTH}</width>\n\t\t<height>{HEIGHT}</height>\n\t\t<depth>3</depth>\n\t</size>",
    voc_object(["1"], (36, 1, 65, 90)),  # the man: the left column of cells
    voc_object(["2", "3"], (96, 31, 125, 60)),  # the shirt, and the cup: one box for two entities
    voc_object(["3"], (66, 61, 95, 90)),  # the cup's second box
    voc_object(["4"], scene=1),
    voc_object(["5"], hidden=1),
    voc_object(["6"], scene=1, hidden=1),
    voc_object(["7"], (36, 1, 65, 90)),  # two males: two boxes, left and right columns
    voc_object(["7"], (96, 1, 125, 90)),
    voc_object(["8"], (56, 51, 70, 70)),  # the bench: between cell centres
    voc_object(["10"], (1, 1, 10, 10)),  # the kite: 25 px left of what the encoder sees
    voc_object(["11"], (1, 1, WIDTH, HEIGHT)),  # the grass: everywhere
    voc_object(["12"], (1, 1, 20, 20)),
    "</annotation>",
])  # fmt: skip
# What the game makes of one image's 18 marked phrases: 10 trials, 8 phrases not scored, each for its reason.
NOT_SCORED = {
    "whole scene": 1,
    "not visual (entity 0)": 1,
    "no box in the annotation": 1,
    "not visible (nobndbox)": 1,
    "whole scene and not visible": 1,
    "no head noun": 1,
    "caption listed in UNRELATED_CAPTIONS": 2,
}
TRIAL_CELLS = [3, 1, 2, 0, 3, 3, 1, 6, 0, 9]  # the cells whose centre lies in a box, per trial, in caption order


@pytest.fixture
def entities(tmp_path) -> Path:
    """Flickr30k Entities in its own layout (images 42, 43 and 44 alike; 44 has no photo), and the photos beside."""
    root = tmp_path / "flickr30k_entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (tmp_path / "photos").mkdir()
    for image_id in ("42", "43", "44"):
        (root / "Sentences" / f"{image_id}.txt").write_text(SENTENCES)
        (root / "Annotations" / f"{image_id}.xml").write_text(ANNOTATION.replace("42.jpg", f"{image_id}.jpg"))
    for image_id in ("42", "43"):
        Image.new("RGB", (WIDTH, HEIGHT), (200, 180, 150)).save(tmp_path / "photos" / f"{image_id}.jpg")
    (root / "test.txt").write_text("42\n43\n44\n")
    (root / "UNRELATED_CAPTIONS").write_text("# format: <imageID> <sentence number>\n42 5\n43 5\n44 5\n100759042 5\n")
    return root


def test_flickr30k_entities_reader_on_a_sample(entities):
    images = read_entities(entities, "test")
    assert [e.image_id for e in images] == ["42", "43", "44"]
    first = images[0]
    assert (first.width, first.height) == (WIDTH, HEIGHT)
    sentence = first.sentences[0]
    assert sentence.text == "A man in a red shirt holds a cup of coffee under a kite ."
    assert [(p.text, p.first_word, p.entity, p.types) for p in sentence.phrases] == [
        ("A man", 0, "1", ("people",)),
        ("a red shirt", 3, "2", ("clothing",)),
        ("a cup of coffee", 7, "3", ("other",)),
        ("a kite", 12, "10", ("other",)),
    ]
    assert first.sentences[1].phrases[0].types == ("people", "other")
    assert first.sentences[1].phrases[2].entity == "0"
    assert first.boxes["1"] == [(35, 0, 65, 90)]  # 1-based and inclusive in the file: 0-based, far edge excluded
    assert first.boxes["2"] == [(95, 30, 125, 60)] and first.boxes["3"] == [(95, 30, 125, 60), (65, 60, 95, 90)]
    assert first.boxes["7"] == [(35, 0, 65, 90), (95, 0, 125, 90)]
    assert first.scene == {"4", "6"} and first.no_box == {"5", "6"}
    assert [s.unrelated for s in first.sentences] == [False, False, False, False, True]  # "42 5": numbered from 1
    assert len(read_entities(entities, None, limit=1)) == 1
    with pytest.raises(UserError, match="no Sentences"):
        read_entities(entities / "Sentences", "test")
    with pytest.raises(UserError, match="no val.txt"):
        read_entities(entities, "val")
    (entities / "Annotations" / "42.xml").unlink()
    with pytest.raises(UserError, match=r"image 42 \(listed in Sentences/\) has no Annotations/42.xml"):
        read_entities(entities, None)  # no "None split"
    (entities / "UNRELATED_CAPTIONS").write_text("42 first\n")
    with pytest.raises(UserError, match="UNRELATED_CAPTIONS line 1"):
        read_entities(entities, None)
    with pytest.raises(ValueError):
        parse_sentence("[/EN#1 broken mark] here [/EN#")


def test_captions_are_fed_as_plain_text_with_each_head_noun_found(entities, tiny):
    sentence = parse_sentence(SENTENCES.splitlines()[2])
    text, word_of = plain_text(sentence)
    assert text == "The man's shirt doesn't hide his shadow, and the street is \"busy\"."
    words = text.split()
    assert [words[word_of[p.first_word + head_word(p)]] for p in sentence.phrases] == [
        "man's",
        "shirt",
        "shadow,",
        "street",
    ]
    # What the game teacher-forces, and the tokens of each trial's word: the plain text's.
    _, tokenizer = tiny
    rows, _, _ = flickr_rows(
        tokenizer, read_entities(entities, "test")[:1], entities.parent / "photos", None, frozenset()
    )
    assert tokenizer.decode(rows.targets[2]) == " " + text
    heads = [tokenizer.decode(rows.targets[row][start:end]).strip() for row, start, end, _, _ in rows.trials]
    assert heads == ["man", "shirt", "cup", "kite.", "man", "man's", "shirt", "males", "bench", "grass;"]


@pytest.mark.parametrize(
    ("phrase", "head"),
    [
        ("A man", "man"),
        ("Two young , White males", "males"),  # a comma inside the phrase
        ("a group of people", "group"),  # a collective noun before "of" is the head (docs/explain.md says why)
        ("a cup of coffee", "cup"),
        ("a type of bench", "bench"),  # a word of kind or quantity before "of": the noun after it
        ("kinds of fruit", "fruit"),
        ("a sort of hat", "hat"),
        ("a lot of people", "people"),
        ("one of the dogs", "dogs"),
        ("some of the kids", "kids"),
        ("two of the men", "men"),
        ("one of a group of people", "group"),
        ("a basket full of apples", "basket"),  # "full" looks back
        ("full of water", "water"),
        ("a trampoline outside", "trampoline"),  # a trailing adverb
        ("his hands up", "hands"),
        ("the outside", "outside"),  # ... unless a determiner makes it the noun
        ("the man 's back", "back"),
        ("the man 's", "man"),  # a trailing possessive
        ("the dogs '", "dogs"),
        ("a plate full of food .", "plate"),  # trailing punctuation
        ("the number 4", "number"),  # a number at the end
        ("jersey number 23", "number"),
        ('the words " Happy Birthday "', "words"),  # a quotation at the end
        ("the word `` love ''", "word"),
        ('a " Stop " sign', "sign"),
        ("a man -LRB- left -RRB-", "man"),
        ("of", None),  # no noun: not scored
        ("the two", None),
        ("a type of", None),
        ("4", None),
    ],
)
def test_head_noun_rules(phrase, head):
    p = Phrase(phrase, 0, "1", ("other",))
    found = head_word(p)
    assert (p.words[found].lower() if found is not None else None) == head


def test_the_head_nouns_shown_in_the_docs_are_the_rules_output():
    doc = (REPO / "docs" / "explain.md").read_text()
    table = doc[doc.index("| phrase | head noun |") :].split("\n\n")[0].splitlines()[2:]
    rows = [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in table]
    assert len(rows) >= 20
    for phrase, head in rows:
        p = Phrase(phrase, 0, "1", ("other",))
        found = head_word(p)
        assert (p.words[found] if found is not None else "(none: not scored)") == head, phrase


def test_pixel_targets_agree_with_a_pixel_by_pixel_count():
    view, boxes = (14.6, 2.0, 104.2, 71.5), [(30, 10, 41, 20), (90, 60, 100, 90)]  # fractional, as a crop gives
    t = targets(view, boxes, 3)
    near, cells = np.zeros((3, 3)), np.zeros((3, 3))
    for y in range(90):
        for x in range(120):
            cx, cy = x + 0.5, y + 0.5  # a pixel belongs to the cell its centre lies in
            if not (view[0] <= cx < view[2] and view[1] <= cy < view[3]):
                continue
            r, c = int((cy - view[1]) / (view[3] - view[1]) * 3), int((cx - view[0]) / (view[2] - view[0]) * 3)
            cells[r, c] += 1
            gaps = [(max(x0 - x, 0, x - (x1 - 1)), max(y0 - y, 0, y - (y1 - 1))) for x0, y0, x1, y1 in boxes]
            distance = min(math.hypot(dx, dy) for dx, dy in gaps)
            near[r, c] += distance <= 15
    np.testing.assert_allclose(t.near, near / cells)
    assert t.near_all == pytest.approx(near.sum() / cells.sum())
    assert 0 < t.near[0, 0] < 1 and t.near[2, 2] > 0  # the second box is 15 px or less below the view
    assert not t.cells.any()  # no cell centre lies in either box: the cell game cannot be won, the pixel game can
    assert decidable(t, "pixels") and not decidable(t, "cells")
    assert t.centre_near is False
    cut_away = targets((35.0, 0.0, 125.0, 90.0), [(0, 0, 20, 90)], 3)  # its last pixel, 19, is 16 px from pixel 35
    assert cut_away.near_all == 0 and not decidable(cut_away, "pixels")
    assert targets((35.0, 0.0, 125.0, 90.0), [(0, 0, 21, 90)], 3).near_all > 0  # 15 px: within the tolerance
    everywhere = targets((35.0, 0.0, 125.0, 90.0), [(0, 0, 160, 90)], 3)
    assert everywhere.near_all == 1 and everywhere.cells.all() and not decidable(everywhere, "cells")


def test_pixel_score_of_a_map_is_the_share_of_its_peak_near_a_box():
    near = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.25]])
    peak = np.zeros((3, 3))
    for cell, credit in (((0, 0), 1.0), ((0, 1), 0.5), ((1, 1), 0.0)):
        peak[:] = 0
        peak[cell] = 1
        assert pixel_credit(peak, near) == credit
    assert pixel_credit(np.ones((3, 3)), near) == pytest.approx(1.75 / 9)  # a flat map: a uniform point
    tally = Tally()
    for credit in (1.0, 0.5, 0.0):
        count(tally, credit)
    assert (tally.hits, tally.ties, tally.misses, tally.accuracy) == (1, 1, 1, 0.5)


def play(entities: Path, model, tokenizer, photos: str = "photos", methods=("attention:mean",), **options) -> dict:
    images = read_entities(entities, "test")
    return flickr_game(model, tokenizer, images, entities.parent / photos, list(methods), 3, **options)


def test_pointing_game_on_the_flickr30k_entities_sample(entities, tiny):
    model, tokenizer = tiny
    result = play(entities, model, tokenizer, methods=["attention:mean", "occlusion:blur"])
    assert (result["images"], result["photos"], result["captions"], result["captions scored"]) == (3, 2, 15, 8)
    phrases = result["phrases"]
    assert (phrases["marked"], phrases["scored"]) == (3 * 18, 2 * 10)
    assert {k: v for k, v in phrases["not scored"].items() if v} == {
        **{reason: 2 * n for reason, n in NOT_SCORED.items()},
        "no photo (missing or unreadable)": 18,  # image 44
    }
    assert phrases["scored"] + sum(phrases["not scored"].values()) == phrases["marked"]  # every phrase accounted for
    assert phrases["not scored"]["words and tokens differ"] == 0  # plain text lines up with the tiny tokenizer too
    for method in ("attention:mean", "occlusion:blur"):
        m = result["methods"][method]
        assert m["grid"] == "3x3" and m["pixels"]["words"] == m["cells"]["words"] == 20
        assert m["pixels"]["decidable"]["words"] == 2 * 7 and m["cells"]["decidable"]["words"] == 2 * 7
        assert 0 <= m["pixels"]["accuracy"] <= 1
    cells, pixels = result["chance"]["cells 3x3"], result["chance"]["pixels"]
    assert (cells["unwinnable"], cells["unlosable"]) == (2 * 2, 2 * 1)  # the kite and the bench; the grass
    assert (pixels["unwinnable"], pixels["unlosable"]) == (2 * 1, 2 * 2)  # the kite; the grass and the two males
    assert cells["uniform"]["all"] == pytest.approx(np.mean(TRIAL_CELLS) / 9)
    assert cells["uniform"]["decidable"] == pytest.approx(np.mean([3, 1, 2, 3, 3, 1, 6]) / 9)
    # The centre of the view (80, 45): in no box but the grass's; within 15 px of the shirt's, the cup's, the right
    # male's, the bench's and the grass's.
    assert (cells["centre"]["all"], cells["centre"]["decidable"]) == (pytest.approx(0.1), 0)
    assert (pixels["centre"]["all"], pixels["centre"]["decidable"]) == (pytest.approx(0.6), pytest.approx(4 / 7))
    assert result["training split"] == {"known": False, "how": "not looked up", "images in it": None, "left out": False}
    table = flickr_table({"views": {"hidden": result}})
    assert "| hidden | attention:mean (3x3) |" in table
    assert "| hidden | chance: centre of the view / centre cells (3x3) | 0.60 | 0.57 | 0.10 | 0.00 |" in table
    assert "20 of 54 marked phrases scored" in table and "no photo (missing or unreadable): 18" in table


def test_flat_and_centred_maps_score_chance(entities, tiny, monkeypatch):
    """The scores and the chance levels are the same computation: a flat map scores a uniform point, a map that
    peaks at the centre cell scores the centre prior of the cell game."""
    model, tokenizer = tiny
    centre = np.zeros(9)
    centre[4] = 1.0
    for values, pixels, cells in ((np.ones(9), "uniform", "uniform"), (centre, None, "centre")):
        monkeypatch.setattr(
            flickr,
            "token_maps",
            lambda model, method, images, f, p, targets, side, v=values: [
                torch.tensor(v).float().expand(len(t), 9) for t in targets
            ],  # fmt: skip
        )
        result = play(entities, model, tokenizer)
        m, chance = result["methods"]["attention:mean"], result["chance"]
        for subset in ("all", "decidable"):
            scored = m["cells"] if subset == "all" else m["cells"]["decidable"]
            assert scored["accuracy"] == pytest.approx(chance["cells 3x3"][cells][subset])
            if pixels:
                scored = m["pixels"] if subset == "all" else m["pixels"]["decidable"]
                assert scored["accuracy"] == pytest.approx(chance["pixels"][pixels][subset])


def test_a_resized_copy_of_the_photos_gives_the_same_trials(entities, tiny):
    model, tokenizer = tiny
    half = entities.parent / "half"
    half.mkdir()
    for image_id in ("42", "43"):
        Image.new("RGB", (WIDTH // 2, HEIGHT // 2), (200, 180, 150)).save(half / f"{image_id}.jpg")
    original, resized = play(entities, model, tokenizer), play(entities, model, tokenizer, "half")
    assert (original["resized photos"], resized["resized photos"]) == (0, 2)
    assert resized["chance"] == original["chance"]  # the same cells and pixels near each box, the same chance
    assert resized["phrases"] == original["phrases"]
    Image.new("RGB", (WIDTH, WIDTH), (200, 180, 150)).save(half / "43.jpg")  # not a copy of 43 at all
    with pytest.raises(UserError, match=r"^photo 43 is 160x160 but its Flickr30k Entities annotation is for 160x90"):
        play(entities, model, tokenizer, "half")


def test_images_of_the_training_split_are_counted_and_left_out(entities, tiny, tmp_path):
    model, tokenizer = tiny
    # A Karpathy split file that puts image 43 in train: what the checkpoint's sidecar points at.
    data = tmp_path / "flickr30k"
    data.mkdir()
    images = [
        {"filename": f"{i}.jpg", "split": s, "sentences": [{"raw": "a man"}]}
        for i, s in (("42", "test"), ("43", "train"))
    ]
    (data / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": images}))
    for image_id in ("42", "43"):
        Image.new("RGB", (WIDTH, HEIGHT)).save(data / f"{image_id}.jpg")
    sidecar = {"data": {"source": str(data), "split": "karpathy", "seed": 0}}
    training = training_images(sidecar, tmp_path / "cache")
    assert training.ids == {"43"}
    left_out = play(entities, model, tokenizer, training=training)
    assert left_out["training split"]["images in it"] == 1 and left_out["training split"]["left out"]
    assert left_out["phrases"]["not scored"]["image in the checkpoint's training split"] == 18
    assert left_out["phrases"]["scored"] == 10
    kept = play(entities, model, tokenizer, training=training, leave_out_training=False)
    assert kept["phrases"]["scored"] == 20 and kept["training split"]["images in it"] == 1
    assert "1 of 3 images are in the checkpoint's training split" in flickr_table({"views": {"v": left_out}})
    assert training_images({"data": {"source": "shapes"}}, tmp_path).ids == frozenset()  # no Flickr30k photo
    unknown = training_images({"data": {"source": str(tmp_path / "gone")}}, tmp_path)
    assert unknown.ids is None and "could not be loaded again" in unknown.note
    assert training_images({}, tmp_path).ids is None


# ------------------------------------------------------------------------------------------------ explanations


def test_explain_writes_a_sheet_and_json_with_a_map_per_word(tiny, tmp_path):
    model, tokenizer = tiny
    e = explain(model, tokenizer, shapes_image(), "Caption:", "a red circle and a blue star")
    assert list(e.methods) == ["attention:rollout", "occlusion:background"]
    assert [w.word for w in e.words] == ["a", "red", "circle", "and", "a", "blue", "star"]
    for w in [*e.words, e.whole]:
        assert {k: v.shape for k, v in w.maps.items()} == {"attention:rollout": (3, 3), "occlusion:background": (3, 3)}
    png, js = write_explanation(e, tmp_path / "out" / "image")
    data = json.loads(js.read_text())
    assert [w["word"] for w in data["words"]] == [w.word for w in e.words]
    np.testing.assert_allclose(
        data["words"][2]["maps"]["occlusion:background"], e.words[2].maps["occlusion:background"], atol=1e-6
    )
    assert data["whole_output"]["text"] == "a red circle and a blue star"
    with Image.open(png) as sheet:
        assert sheet.width > 600 and sheet.height > 300
    html = page_html(e)
    assert html.count('class="explain-word"') == 7 and html.count("<img") == 2 * 8
    pooled = VisionLanguageModel(
        VLMConfig(encoder="tiny", encoder_weights="none", view="pooled", num_visual_tokens=4, top_k=1),
        model.encoder,
        model.decoder,
    ).eval()
    assert list(explain(pooled, tokenizer, shapes_image(), "Caption:", "a red circle").methods) == [
        "occlusion:background"
    ]  # no attention map: pooled visual tokens have no place


# ------------------------------------------------------------------------------------------------ on the demo model


@pytest.fixture(scope="module")
def demo(trained_demo, demo_scenes):
    """(checkpoint, [(image path, scene)] of held-out images) of the session's demo run."""
    return trained_demo[2], demo_scenes


def test_occlusion_on_the_demo_points_at_the_only_shape(demo):
    from checkpoints.restore import load_trained
    from data import load_image

    checkpoint, held_out = demo
    model, tokenizer, _ = load_trained(checkpoint)
    singles = [(p, s["shapes"][0]) for p, s in held_out if len(s["shapes"]) == 1][:8]
    images = [load_image(p) for p, _ in singles]
    prompts = [tokenizer.encode("Caption:")] * len(images)
    targets = [tokenizer.encode(f" a {s['colour']} {s['kind']}") for _, s in singles]
    drops = occlusion_drops(images, model_log_probs(model, prompts, targets), 3, "background")
    right = [int(d[2].argmax()) == s["cell"][0] * 3 + s["cell"][1] for d, (_, s) in zip(drops, singles, strict=True)]
    assert sum(right) >= 6, right  # the shape's kind word depends on its cell most (8/8 in the measured run)


def test_caption_explain_writes_png_and_json(demo, tmp_path, capsys):
    import caption as caption_py

    checkpoint, held_out = demo
    path = held_out[0][0]
    common = [str(path), "--checkpoint", str(checkpoint), "--explain"]
    caption = subprocess.run(
        [sys.executable, str(REPO / "caption.py"), *common, str(tmp_path / "maps")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300,
    )  # fmt: skip
    assert caption.returncode == 0, caption.stderr
    data = json.loads((tmp_path / "maps" / f"{path.stem}.json").read_text())
    assert " ".join(w["word"] for w in data["words"]) == caption.stdout.strip()
    assert set(data["methods"]) == {"attention:rollout", "occlusion:background"}
    assert (tmp_path / "maps" / f"{path.stem}.png").stat().st_size > 10_000
    # An answer, through the same main() in this process
    assert caption_py.main([*common, str(tmp_path / "qa"), "--question", "where is the circle?"]) == 0
    answer = capsys.readouterr().out
    data = json.loads((tmp_path / "qa" / f"{path.stem}.json").read_text())
    assert data["prompt"] == "Question: where is the circle? Answer:" and data["output"] == answer.strip()


def test_pointing_command_on_the_demo(demo, entities, tmp_path, capsys, one_thread):
    from explain.pointing.__main__ import main as pointing_main

    checkpoint, _ = demo
    result = subprocess.run(
        [sys.executable, "-m", "explain.pointing", "--checkpoint", str(checkpoint), "--limit", "12",
         "--methods", "attention:mean,occlusion:background", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| attention:mean |" in result.stdout and "chance: uniform over the 9 cells | 0.11" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    (view,) = results["views"].values()
    assert set(view["methods"]["occlusion:background"]) == {"trained", "untrained bridge", "shuffled images"}
    assert (tmp_path / "pointing.png").is_file() and (tmp_path / "table.md").is_file()
    # The rest through the same main() in this process (the command line itself is checked above).
    assert pointing_main(["--checkpoint", str(checkpoint), "--methods", "occlusion:grey"]) == 2
    bad = capsys.readouterr().err
    assert bad.count("\n") == 1 and "occlusion:grey" in bad
    flickr = ["--checkpoint", str(checkpoint.parent), "--data", f"flickr30k-entities:{entities}"]
    assert pointing_main(flickr) == 2
    assert "--images" in capsys.readouterr().err
    assert pointing_main([*flickr, "--images", str(entities.parent / "photos"), "--grid", "3"]) == 0
    played = capsys.readouterr().out
    assert "| hidden | occlusion:background (3x3) |" in played
    assert "| hidden | chance: centre of the view / centre cells (3x3) | 0.60 | 0.57 | 0.10 | 0.00 |" in played
    assert "0 of 3 images are in the checkpoint's training split (trained on the shapes set" in played
