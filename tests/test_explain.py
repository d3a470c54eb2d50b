"""Where the model looks (explain/): the recorded attention weights, words, occlusion, the pointing game's scorer,
Flickr30k Entities, the sheet and JSON, and caption.py --explain (its page in a headless browser is tested in
tests/test_page.py, with the page's other browser tests).

Most tests build a tiny random model in a second; the last ones use the session's short demo run (`trained_demo`
in conftest.py), as tests/test_caption.py does.
"""

from __future__ import annotations

import json
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
from data import train_bpe_tokenizer
from data.flickr30k_entities import head_word, parse_sentence, read_entities
from errors import UserError
from explain import attention, explain
from explain.games import derangement, flickr_game
from explain.maps import Grid, view_box
from explain.occlusion import FILLS, model_log_probs, occlusion_drops, token_log_probs
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

SENTENCES = """[/EN#1/people A man] in [/EN#2/clothing a red shirt] holds [/EN#3/other a cup of coffee] .
[/EN#1/people/other The man] stands in front of [/EN#4/scene a wall] with [/EN#0/notvisual his thoughts] .
"""
ANNOTATION = """<annotation>
\t<filename>42.jpg</filename>
\t<size>
\t\t<width>120</width>
\t\t<height>90</height>
\t\t<depth>3</depth>
\t</size>
\t<object>
\t\t<name>1</name>
\t\t<bndbox>
\t\t\t<xmin>1</xmin>
\t\t\t<ymin>1</ymin>
\t\t\t<xmax>40</xmax>
\t\t\t<ymax>90</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>2</name>
\t\t<name>3</name>
\t\t<bndbox>
\t\t\t<xmin>81</xmin>
\t\t\t<ymin>31</ymin>
\t\t\t<xmax>120</xmax>
\t\t\t<ymax>60</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>3</name>
\t\t<bndbox>
\t\t\t<xmin>41</xmin>
\t\t\t<ymin>61</ymin>
\t\t\t<xmax>80</xmax>
\t\t\t<ymax>90</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>4</name>
\t\t<scene>1</scene>
\t\t<nobndbox>0</nobndbox>
\t</object>
\t<object>
\t\t<name>5</name>
\t\t<scene>0</scene>
\t\t<nobndbox>1</nobndbox>
\t</object>
</annotation>
"""


@pytest.fixture
def entities(tmp_path) -> Path:
    """A two-image sample of Flickr30k Entities in its own layout, and the photos beside it."""
    root = tmp_path / "flickr30k_entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (tmp_path / "photos").mkdir()
    for image_id in ("42", "43"):
        (root / "Sentences" / f"{image_id}.txt").write_text(SENTENCES)
        (root / "Annotations" / f"{image_id}.xml").write_text(ANNOTATION)
        Image.new("RGB", (120, 90), (200, 180, 150)).save(tmp_path / "photos" / f"{image_id}.jpg")
    (root / "test.txt").write_text("42\n43\n")
    return root


def test_flickr30k_entities_reader_on_a_sample(entities):
    images = read_entities(entities, "test")
    assert [e.image_id for e in images] == ["42", "43"]
    first = images[0]
    assert (first.width, first.height) == (120, 90)
    sentence = first.sentences[0]
    assert sentence.text == "A man in a red shirt holds a cup of coffee ."
    assert [(p.text, p.first_word, p.entity, p.types) for p in sentence.phrases] == [
        ("A man", 0, "1", ("people",)),
        ("a red shirt", 3, "2", ("clothing",)),
        ("a cup of coffee", 7, "3", ("other",)),
    ]
    assert first.sentences[1].phrases[0].types == ("people", "other")
    assert first.sentences[1].phrases[-1].entity == "0"
    assert first.boxes == {"1": [(0, 0, 40, 90)], "2": [(80, 30, 120, 60)], "3": [(80, 30, 120, 60), (40, 60, 80, 90)]}
    assert first.scene == {"4"} and first.no_box == {"5"}
    heads = [p.words[head_word(p)] for p in sentence.phrases]
    assert heads == ["man", "shirt", "cup"]
    assert len(read_entities(entities, None, limit=1)) == 1
    with pytest.raises(UserError, match="no Sentences"):
        read_entities(entities / "Sentences", "test")
    with pytest.raises(UserError, match="no val.txt"):
        read_entities(entities, "val")
    with pytest.raises(ValueError):
        parse_sentence("[/EN#1 broken mark] here [/EN#")


def test_pointing_game_on_the_flickr30k_entities_sample(entities, tiny):
    model, tokenizer = tiny
    images = read_entities(entities, "test")
    result = flickr_game(model, tokenizer, images, entities.parent / "photos", ["attention:mean", "occlusion:blur"], 3)
    assert (result["images"], result["captions"]) == (2, 4)
    assert result["phrases"] == 2 * (3 + 1)  # entities with boxes: man, shirt, cup; then man (wall is the scene)
    for tally in result["methods"].values():
        assert tally["words"] == 8 and 0 <= tally["accuracy"] <= 1
    chance = result["chance 3x3"]
    # 3x3 cells of 40x30 px: the man covers column 0 (3 of 9 cells), the shirt 1, the cup 2.
    assert chance["uniform"] == pytest.approx(np.mean([3, 1, 2, 3] * 2) / 9)
    assert chance["centre"]["accuracy"] == 0  # the centre cell (40-80, 30-60) is in no box


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
    from explain.games import main as pointing_main

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
    assert "| hidden | occlusion:background |" in played and "chance 3x3: centre cell | 0.00" in played
