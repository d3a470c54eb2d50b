"""Tests for `synth/` (teacher-written captions and questions) and for reading them back with `data.load_dataset`.

Nothing is downloaded. The real generation path runs with a tiny, randomly initialised Qwen2.5-VL built by
transformers from a config, with a processor assembled here from the real Qwen tokenizer (skipped when
`../shared/qwen3-tokenizer` is absent): its answers are junk, which must be rejected and counted. The retry,
resume and card logic run with a scripted fake teacher; the hub is faked by monkeypatching `HfApi`'s methods
or pointing it at a closed local port.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard, HfApi
from huggingface_hub import constants as hf_constants
from PIL import Image

import hub
import synth.hub
import train
from data import generate_shapes, load_dataset, read_synthetic
from errors import UserError
from synth import generate, list_images, parse_response, read_all, write_card
from synth.__main__ import main
from synth.prompt import (
    EMPTY_ANSWER,
    EMPTY_CAPTION,
    EXTRA_QUESTION,
    LONG_ANSWER,
    MALFORMED,
    NO_JSON,
    NO_QUESTIONS,
    PROMPT_VERSION,
    REPEATED_QUESTION,
    TRUNCATED,
    build_prompt,
)

QWEN_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer"
GOOD = json.dumps(
    {
        "caption": "A red square on a white background.",
        "qa": [
            {"question": "What colour is the square?", "answer": "red."},
            {"question": "How many squares are there?", "answer": 1},
        ],
    }
)

# ---------------------------------------------------------------------------------------------------------------------
# Helpers: images, a scripted teacher, a hand-written dataset


def write_images(folder: Path, n: int, size: tuple[int, int] = (56, 56)) -> list[Path]:
    """n small flat-colour PNGs; image i has red channel 10 * i, so a fake teacher can tell which one it got."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:02d}.png"
        Image.new("RGB", size, (10 * i, 100, 200)).save(path)
        paths.append(path)
    return paths


class ScriptedTeacher:
    """A teacher whose reply to image i is `script[i][0]` greedily and `script[i][1]` when sampling (a retry)."""

    name = "scripted-teacher"

    def __init__(self, script: dict[int, tuple[str, str]]):
        self.script = script
        self.calls: list[tuple[list[int], bool]] = []  # (image indices, sample) of each call

    def answer(self, images: list[Image.Image], prompt: str, sample: bool = False) -> list[str]:
        assert "JSON" in prompt
        indices = [image.getpixel((0, 0))[0] // 10 for image in images]
        self.calls.append((indices, sample))
        return [self.script[i][1 if sample else 0] for i in indices]


def synthetic_record(image: Path, caption: str, qa: list[tuple[str, str]]) -> dict:
    return {
        "image": str(image),
        "image_id": image.stem,
        "source": str(image.parent),
        "caption": caption,
        "qa": [{"question": q, "answer": a} for q, a in qa],
        "teacher": "hand-written",
        "prompt_version": PROMPT_VERSION,
        "failures": [],
        "dropped_qa": {},
    }


def write_synthetic(root: Path, records: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    """A synthetic dataset written by hand: one shard (plus any raw extra lines) and its card."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (root / "data" / "shard-00000.jsonl").write_text("\n".join(lines) + "\n")
    write_card(root)
    return root


def card_counts(root: Path) -> dict:
    return DatasetCard.load(root / "README.md").data.to_dict()["counts"]


# ---------------------------------------------------------------------------------------------------------------------
# Parsing and checking the teacher's answers


def test_well_formed_answer_is_parsed_and_normalised():
    parsed = parse_response(GOOD, n_questions=5)
    assert parsed.ok and parsed.caption == "A red square on a white background."
    # The final full stop goes ("red." -> "red"), a JSON number becomes text.
    assert parsed.qa == [("What colour is the square?", "red"), ("How many squares are there?", "1")]
    assert not parsed.dropped


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{GOOD}\n```",
        f"Sure! Here is the JSON you asked for:\n```json\n{GOOD}\n```\nLet me know if you need more {{details}}.",
        f"{GOOD} trailing words",
    ],
)
def test_fences_and_text_around_the_object_are_tolerated(text):
    assert parse_response(text, n_questions=5).qa == parse_response(GOOD, n_questions=5).qa


def test_truncated_malformed_and_missing_json_fail():
    # Cut off by the token limit, even right after a complete inner {"question": ...} object: truncated.
    for cut in (len(GOOD) - 1, GOOD.index("}") + 1, GOOD.index("red.") + 2, 20):
        assert parse_response(GOOD[:cut], 5).failure == TRUNCATED, GOOD[:cut]
    assert parse_response("{'caption': 'single quotes are not JSON'}", 5).failure == MALFORMED
    assert parse_response('{"caption": "a", "qa": [1, 2,]}', 5).failure == MALFORMED
    assert parse_response("A dog runs on the grass.", 5).failure == NO_JSON
    assert parse_response("", 5).failure == NO_JSON


def test_bad_pairs_are_dropped_and_counted():
    qa = [
        {"question": "What colour is the dog?", "answer": "brown"},
        {"question": "what colour is the dog", "answer": "black"},  # the same question again
        {"question": "What is the dog doing?", "answer": "  "},
        {"question": "Where is the dog?", "answer": "it is running on the green grass"},  # 7 words
        {"question": "", "answer": "grass"},
        {"question": "Is it sunny?", "answer": True},
        {"question": "How many dogs?", "answer": "one"},  # beyond the 3 asked for
        "not a pair",
    ]
    parsed = parse_response(json.dumps({"caption": "A brown dog runs.", "qa": qa}), n_questions=2)
    assert parsed.ok
    assert parsed.qa == [("What colour is the dog?", "brown"), ("Is it sunny?", "yes")]
    assert parsed.dropped == {
        REPEATED_QUESTION: 1,
        EMPTY_ANSWER: 1,
        LONG_ANSWER: 1,
        "empty question": 1,
        EXTRA_QUESTION: 1,
        "not a question-answer pair": 1,
    }
    # A five-word answer is still short enough; six words is not.
    five = parse_response(json.dumps({"caption": "c", "qa": [{"question": "q", "answer": "a b c d e"}]}), 1)
    six = parse_response(json.dumps({"caption": "c", "qa": [{"question": "q", "answer": "a b c d e f"}]}), 1)
    assert five.qa == [("q", "a b c d e")] and six.failure == NO_QUESTIONS and six.dropped == {LONG_ANSWER: 1}


def test_extra_questions_empty_caption_and_no_questions():
    qa = [{"question": f"question {i}?", "answer": "yes"} for i in range(4)]
    parsed = parse_response(json.dumps({"caption": "c", "qa": qa}), n_questions=2)
    assert len(parsed.qa) == 2 and parsed.dropped == {EXTRA_QUESTION: 2}
    assert parse_response(json.dumps({"caption": "  ", "qa": qa}), 2).failure == EMPTY_CAPTION
    assert parse_response(json.dumps({"caption": "c", "qa": []}), 2).failure == NO_QUESTIONS
    assert parse_response(json.dumps({"caption": "c"}), 2).failure == NO_QUESTIONS
    captions_only = parse_response(json.dumps({"caption": "c", "qa": []}), 0)
    assert captions_only.ok and captions_only.qa == []


def test_prompt_asks_for_the_json_form_and_the_number_of_questions():
    prompt = build_prompt(4)
    assert '{"caption": "...", "qa": [{"question": "...", "answer": "..."}]}' in prompt
    assert "4 different questions" in prompt
    assert "empty list" in build_prompt(0)


# ---------------------------------------------------------------------------------------------------------------------
# The generation loop with a scripted teacher: retries, rejection, counts, resume


def test_failed_images_are_retried_once_then_rejected_and_the_card_counts_match(tmp_path):
    paths = write_images(tmp_path / "images", 4)
    (tmp_path / "images" / "img_99.jpg").write_bytes(b"<html>not an image</html>")
    long_and_repeated = json.dumps(
        {
            "caption": "Two squares.",
            "qa": [
                {"question": "How many squares?", "answer": "two"},
                {"question": "how many squares", "answer": "2"},
                {"question": "What is behind them?", "answer": "a very long answer that goes on"},
            ],
        }
    )
    teacher = ScriptedTeacher(
        {
            0: (GOOD, "unused"),
            1: ('{"caption": "cut sho', f"```json\n{GOOD}\n```"),  # truncated, then fine when retried
            2: ("I cannot answer.", '{"caption": "again cut'),  # fails twice: rejected
            3: (long_and_repeated, "unused"),
        }
    )
    out = tmp_path / "out"
    images = list_images(str(tmp_path / "images"), cache_dir=tmp_path)
    assert [i.path for i in images] == [*paths, tmp_path / "images" / "img_99.jpg"]
    stats = generate(images, teacher, out, n_questions=3, batch_size=8)

    # One greedy call for the 4 decodable images, one sampled retry for the 2 that failed.
    assert teacher.calls == [([0, 1, 2, 3], False), ([1, 2], True)]
    assert (stats.accepted, stats.rejected, stats.qa_pairs) == (3, 2, 2 + 2 + 1)
    accepted, rejected = read_all(out)
    by_id = {r["image_id"]: r for r in accepted}
    assert sorted(by_id) == ["img_00", "img_01", "img_03"]
    assert by_id["img_01"]["failures"] == [TRUNCATED] and by_id["img_00"]["failures"] == []
    assert by_id["img_03"]["qa"] == [{"question": "How many squares?", "answer": "two"}]
    assert by_id["img_03"]["dropped_qa"] == {REPEATED_QUESTION: 1, LONG_ANSWER: 1}
    assert all(r["teacher"] == "scripted-teacher" and r["prompt_version"] == PROMPT_VERSION for r in accepted)
    rejected_by_id = {r["image_id"]: r for r in rejected}
    assert rejected_by_id["img_02"]["failures"] == [NO_JSON, TRUNCATED]
    assert rejected_by_id["img_02"]["output"] == '{"caption": "again cut'  # the raw answer, for inspection
    assert rejected_by_id["img_99"]["failures"] == ["bad image (unreadable)"]

    counts = card_counts(out)
    assert counts == {
        "images": 3,
        "captions": 3,
        "qa_pairs": 5,
        "rejected_images": 2,
        "bad_images": 1,
        "retried_images": 2,
        "failures": {"bad image (unreadable)": 1, NO_JSON: 1, TRUNCATED: 2},
        "dropped_qa_pairs": {LONG_ANSWER: 1, REPEATED_QUESTION: 1},
    }
    card = DatasetCard.load(out / "README.md")
    assert card.data.teacher_model == "scripted-teacher" and card.data.prompt_version == PROMPT_VERSION
    assert card.data.source_images == [str(tmp_path / "images")] and card.data.date
    assert "| question-answer pairs | 5 |" in card.text and build_prompt(3).splitlines()[0] in card.text

    # What was written reads back as training data: one caption per image, the checked questions.
    records, report = read_synthetic(out)
    assert {r.image_id: (len(r.captions), len(r.qa)) for r in records} == {
        "img_00": (1, 2),
        "img_01": (1, 2),
        "img_03": (1, 1),
    }
    assert sum(len(r.qa) for r in records) == counts["qa_pairs"] and report.images_kept == counts["images"]


def test_a_rerun_skips_done_images_and_survives_an_interruption(tmp_path):
    write_images(tmp_path / "images", 5)
    teacher = ScriptedTeacher({i: (GOOD, GOOD) for i in range(5)})
    out = tmp_path / "out"

    def stop_after_first_batch(stats):
        raise KeyboardInterrupt

    images = list_images(str(tmp_path / "images"), cache_dir=tmp_path, limit=4)
    with pytest.raises(KeyboardInterrupt):
        generate(images, teacher, out, n_questions=2, batch_size=2, on_batch=stop_after_first_batch)
    assert card_counts(out)["images"] == 2  # the card was rewritten on the way out
    # A crash in the middle of a write leaves half a line; the next run cuts it off.
    shard = out / "data" / "shard-00000.jsonl"
    shard.write_text(shard.read_text() + '{"image": "/half/a/li')

    stats = generate(images, teacher, out, n_questions=2, batch_size=2)
    assert teacher.calls[1:] == [([2, 3], False)]  # only the two images not done yet
    assert (stats.accepted, stats.skipped_done) == (2, 2)
    assert shard.read_text().endswith("}\n") and len(shard.read_text().splitlines()) == 2
    assert len(list((out / "data").glob("shard-*.jsonl"))) == 2  # each run appends its own shard

    # The same command again does nothing; a larger --limit adds only the new image.
    assert generate(images, teacher, out, n_questions=2).accepted == 0 and len(teacher.calls) == 2
    all_images = list_images(str(tmp_path / "images"), cache_dir=tmp_path)
    assert generate(all_images, teacher, out, n_questions=2).accepted == 1
    assert teacher.calls[2:] == [([4], False)]
    accepted, _ = read_all(out)
    assert sorted(r["image_id"] for r in accepted) == [f"img_{i:02d}" for i in range(5)]
    assert card_counts(out)["images"] == 5 and card_counts(out)["qa_pairs"] == 10

    # Another teacher (or prompt version) in the same folder is refused.
    other = ScriptedTeacher({})
    other.name = "another-teacher"
    with pytest.raises(UserError, match="another --out"):
        generate(all_images, other, out)


# ---------------------------------------------------------------------------------------------------------------------
# The real generation path: a tiny random Qwen2.5-VL through transformers

CHAT_TEMPLATE = (  # Qwen2.5-VL's template, without the default system message
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_qwen25vl(tmp_path_factory) -> Path:
    """A random Qwen2.5-VL (2 text blocks of width 32, 2 vision blocks) with the real Qwen tokenizer, saved."""
    if not (QWEN_TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip(f"the real Qwen tokenizer is not at {QWEN_TOKENIZER_DIR}")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(QWEN_TOKENIZER_DIR)
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(),
        video_processor=transformers.Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    config = transformers.Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            # M-RoPE splits each head's 4 rotary frequencies between time, height and width.
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
            initializer_range=0.2,  # larger than the usual 0.02, so different images give different junk
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            fullatt_block_indexes=[1],
            initializer_range=0.2,
        ),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    path = tmp_path_factory.mktemp("tiny-qwen25vl")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_command_runs_the_real_teacher_and_rejects_its_junk(tmp_path, tiny_qwen25vl, capsys):
    write_images(tmp_path / "images", 3)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    out = tmp_path / "out"
    args = ["--images", str(tmp_path / "images"), "--out", str(out), "--model", str(tiny_qwen25vl)]
    code = main([*args, "--questions", "2", "--batch-size", "2", "--max-new-tokens", "8"])
    assert code == 0, capsys.readouterr().err
    # Random weights write random tokens: never a valid answer, so every image is retried once, then rejected.
    accepted, rejected = read_all(out)
    assert accepted == [] and len(rejected) == 4
    failures = {r["image_id"]: r["failures"] for r in rejected}
    assert len(failures["broken"]) == 1 and failures["broken"][0].startswith("bad image")
    assert all(len(failures[f"img_{i:02d}"]) == 2 for i in range(3))
    assert all(r["teacher"] == str(tiny_qwen25vl) for r in rejected)
    counts = card_counts(out)
    assert (counts["images"], counts["rejected_images"], counts["bad_images"], counts["retried_images"]) == (0, 4, 1, 3)
    assert sum(counts["failures"].values()) == 7
    assert "0 images described (0 questions), 4 rejected" in " ".join(capsys.readouterr().err.split())


def test_batched_generation_is_left_padded(tiny_qwen25vl):
    """Images of different sizes give prompts of different lengths; each answer must not depend on its batch."""
    from synth.teacher import QwenTeacher

    teacher = QwenTeacher(str(tiny_qwen25vl), max_new_tokens=6)
    assert teacher.model.dtype == torch.float32  # fp32 on CPU
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, 56, 3), dtype=np.uint8)) for h in (56, 112, 168)]
    prompt = build_prompt(1)
    alone = [teacher.answer([image], prompt)[0] for image in images]
    together = teacher.answer(images, prompt)
    assert together == alone
    assert len(set(alone)) > 1  # different images, different (junk) answers: the image reaches the model


def test_a_missing_teacher_is_one_clear_error(tmp_path, capsys):
    write_images(tmp_path / "images", 1)
    (tmp_path / "no-model").mkdir()
    code = main(
        ["--images", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "no-model")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "could not load the teacher" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "x"], "nothing to do"),
        (["--out", "x", "--images", "y", "--public"], "--public only applies"),
        (["--out", "x", "--images", "y", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--out", "x", "--images", "y", "--push-to-hub", "not a repo"], "not a valid repo id"),
        (["--out", "x", "--images", "no/such/folder"], "no/such/folder: no such folder"),  # absolute, in the line
    ],
)
def test_command_line_mistakes_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------------
# Reading synthetic data back, alone and merged with the images' own source


def test_load_dataset_reads_a_synthetic_folder(tmp_path):
    images = write_images(tmp_path / "images", 10)
    records = [
        synthetic_record(p, f"caption {i}", [(f"q{i}?", "yes"), ("how many?", "one")]) for i, p in enumerate(images)
    ]
    records[9]["image"] = "images/img_09.png"  # a relative path is read relative to the dataset folder
    root = tmp_path
    write_synthetic(root, records, extra_lines=('{"image": "x.png", "caption": 3}', '{"image": "/half/a/li'))
    splits, report = load_dataset(f"synthetic:{root}", cache_dir=tmp_path / "cache")
    loaded = splits.train + splits.val + splits.test
    assert sorted(r.image_id for r in loaded) == [f"img_{i:02d}" for i in range(10)]
    by_id = {r.image_id: r for r in loaded}
    assert by_id["img_03"].captions == ["caption 3"] and by_id["img_03"].qa == [("q3?", "yes"), ("how many?", "one")]
    assert by_id["img_09"].path == tmp_path / "images" / "img_09.png"
    assert report.malformed_rows_skipped == 2 and "Skipped 2 malformed rows" in report.summary()
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"synthetic:{tmp_path / 'nope'}", cache_dir=tmp_path)
    with pytest.raises(UserError, match="no data/shard"):
        load_dataset(f"synthetic:{tmp_path / 'images'}", cache_dir=tmp_path)


def shapes_with_synthetic(tmp_path: Path, n_shapes: int = 20) -> tuple[Path, Path]:
    """A shapes set of `n_shapes` in cache/, and a synthetic set about 3 of its images plus 1 image of its own."""
    cache = tmp_path / "cache"
    shapes = cache / f"shapes-seed0-n{n_shapes}"
    generate_shapes(shapes, n_images=n_shapes, seed=0)
    extra = write_images(tmp_path / "extra", 1)[0]
    records = [
        synthetic_record(shapes / "images" / f"shape_{i:05d}.png", f"teacher caption {i}", [("is it a toy?", "yes")])
        for i in range(3)
    ]
    # Made on another machine: the folder differs, the file name identifies the image.
    records[2]["image"] = "/elsewhere/flickr/shape_00002.png"
    records.append(synthetic_record(extra, "a plain blue picture", [("what colour is it?", "blue")]))
    return cache, write_synthetic(tmp_path / "synthetic", records)


def test_sources_merge_by_image_before_splitting(tmp_path):
    cache, synthetic = shapes_with_synthetic(tmp_path)
    shapes_only, _ = load_dataset("shapes", cache_dir=cache, shapes_images=20)
    splits, report = load_dataset(f"shapes,synthetic:{synthetic}", cache_dir=cache, shapes_images=20)
    merged = splits.train + splits.val + splits.test
    assert len(merged) == 21 and len({r.path for r in merged}) == 21  # each image once, in one split
    by_name = {r.path.name: r for r in merged}
    before = {r.path.name: r for r in shapes_only.train + shapes_only.val + shapes_only.test}
    for i in range(3):
        name = f"shape_{i:05d}.png"
        assert by_name[name].captions == before[name].captions + [f"teacher caption {i}"]
        assert by_name[name].qa == before[name].qa + [("is it a toy?", "yes")]
        assert by_name[name].path == cache / "shapes-seed0-n20" / "images" / name  # the path that exists
    assert by_name["img_00.png"].captions == ["a plain blue picture"]
    assert by_name["shape_00005.png"].captions == before["shape_00005.png"].captions  # untouched
    assert before["shape_00000.png"].qa[-1] != ("is it a toy?", "yes")  # the inputs were not modified
    assert "Loaded 21 of 21 images (karpathy-json + synthetic-jsonl" in report.summary()
    # Splitting stays by image: the merged record goes where the shapes set's label says (the karpathy scheme);
    # an image with no label (the teacher-only one) cannot be placed.
    with pytest.raises(UserError, match="split labels"):
        load_dataset(f"shapes,synthetic:{synthetic}", cache_dir=cache, shapes_images=20, split="karpathy")
    with pytest.raises(UserError, match="empty entry"):
        load_dataset("shapes,", cache_dir=cache, shapes_images=20)


def test_merging_refuses_ambiguous_file_names(tmp_path):
    a, b = write_images(tmp_path / "a", 1)[0], write_images(tmp_path / "b", 1)[0]  # both named img_00.png
    write_synthetic(tmp_path / "s1", [synthetic_record(a, "one", []), synthetic_record(b, "two", [])])
    write_synthetic(tmp_path / "s2", [synthetic_record(a, "three", [])])
    with pytest.raises(UserError, match="share the file name 'img_00.png'"):
        load_dataset(f"synthetic:{tmp_path / 's1'},synthetic:{tmp_path / 's2'}", cache_dir=tmp_path)


def test_train_runs_on_a_merged_source(tmp_path, capsys):
    """`python train.py --data FOLDER,synthetic:PATH` trains captions and questions together (a few steps)."""
    cache, synthetic = shapes_with_synthetic(tmp_path, n_shapes=24)
    shapes_folder = cache / "shapes-seed0-n24"
    code = train.main(
        ["--demo", "--data", f"{shapes_folder},synthetic:{synthetic}", "--wandb", "disabled"]
        + ["--output-dir", str(tmp_path / "models"), "--cache-dir", str(cache), "--epochs", "1", "--max-steps", "2"]
        + ["--batch-size", "16", "--eval-images", "3", "--gallery-size", "3", "--num-samples", "1"]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    assert "Loaded 25 of 25 images (karpathy-json + synthetic-jsonl" in err
    assert list((tmp_path / "models").glob("runs/*/1_tiny_top2_step2.safetensors"))  # in its run folder, mid-epoch


# ---------------------------------------------------------------------------------------------------------------------
# Uploading to the hub


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    images = write_images(tmp_path / "images", 3)
    root = write_synthetic(
        tmp_path / "out", [synthetic_record(p, "a picture", [("is it blue?", "yes")]) for p in images]
    )
    (root / "rejected.jsonl").write_text("")
    (root / "notes.txt").write_text("not part of the dataset")
    return root


def test_push_creates_a_private_dataset_repo_and_uploads_the_files(small_dataset, monkeypatch, capsys):
    calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        HfApi,
        "create_repo",
        lambda self, repo_id, **kw: (
            calls.append(("create_repo", repo_id, kw)) or f"https://huggingface.co/datasets/{repo_id}"
        ),
    )
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload_folder", kw)))
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test"]) == 0
    (_, repo_id, create), (_, upload) = calls
    assert repo_id == "someone/synthetic-test"
    assert create == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert upload["repo_id"] == "someone/synthetic-test" and upload["repo_type"] == "dataset"
    assert upload["folder_path"] == str(small_dataset)
    # Exactly the card, the shards and the rejected log are sent (not other files in the folder).
    from fnmatch import fnmatch

    sent = sorted(
        str(p.relative_to(small_dataset))
        for p in small_dataset.rglob("*")
        if p.is_file() and any(fnmatch(str(p.relative_to(small_dataset)), pat) for pat in upload["allow_patterns"])
    )
    assert sent == ["README.md", "data/shard-00000.jsonl", "rejected.jsonl"]
    assert [str(f) for f in synth.hub.upload_files(small_dataset)] == sent
    output = capsys.readouterr()
    assert "uploaded" in output.err and "hf_do_not_print_me" not in output.out + output.err

    calls.clear()
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test", "--public"]) == 0
    assert calls[0][2]["private"] is False


def test_push_without_network_fails_in_one_line_and_keeps_the_data(small_dataset, monkeypatch, capsys):
    before = {p: p.read_bytes() for p in small_dataset.rglob("*") if p.is_file() and p.name != "README.md"}
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    # No network: the hub's address is a closed local port, so the connection is refused at once.
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test"]) == 2
    err = capsys.readouterr().err
    assert "could not upload to the hub dataset repo someone/synthetic-test" in " ".join(err.split())
    assert f"the data is still in {small_dataset}" in err
    assert "Traceback" not in err and "hf_do_not_print_me" not in err
    # HF_HUB_OFFLINE=1: refused before any connection.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before and (small_dataset / "README.md").is_file()
    # No token at all: said plainly.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test"]) == 2
    assert "set HF_TOKEN" in capsys.readouterr().err


def test_dry_run_lists_the_upload_without_network(small_dataset, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("--dry-run must not call the hub")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    card_before = (small_dataset / "README.md").read_text()
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/synthetic-test", "--dry-run"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "would upload 3 files" in err and "private dataset repo someone/synthetic-test" in err
    assert "repo_type=dataset" in err and "data/shard-00000.jsonl" in err and "notes.txt" not in err
    assert (small_dataset / "README.md").read_text() == card_before  # nothing written either
    assert main(["--out", str(small_dataset), "--push-to-hub", "someone/x", "--public", "--dry-run"]) == 0
    assert "public dataset repo someone/x" in " ".join(capsys.readouterr().err.split())
