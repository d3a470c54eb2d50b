"""Transfer learning, offline: the demo's text-pretrained LM, a frozen LM that only the bridge steers, and the
experiment runner (python -m experiments)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO

import demo.pretrain as pretrain
import train
import training.run
from checkpoints.store import find_checkpoint, read_checkpoint
from data import load_dataset
from training.config import load_config
from weights_loader import load_qwen3, load_tokenizer, save_qwen3

# 100 steps (two thirds of an epoch of its 1,600 caption documents and 800 weather documents) instead of the demo's
# three epochs: enough to show what the tests check (held-out perplexity 1.5 on the captions' text and 1.5 on weather
# reports, against ~700 for a random model; the notebook's continuation check: 71% against 17% by chance), in about
# 28 s rather than two minutes. Notebook 05 reads the same model.
QUICK = pretrain.PretrainSettings(epochs=1, max_steps=100, warmup_steps=15)


@pytest.fixture()
def quick_pretraining(monkeypatch):
    monkeypatch.setattr(pretrain, "DEFAULT_SETTINGS", QUICK)


def test_pretrained_lm_loads_like_a_checkpoint_and_predicts_held_out_text(session_cache):
    splits, _ = load_dataset("shapes", cache_dir=session_cache, split="random", seed=0)
    messages = []
    # Built into the session's cache, where the next tests of this file and notebook 05 find it (the same texts,
    # settings and seed), unless the notebook built it first.
    directory = pretrain.pretrained_demo_lm(splits.train, splits.val, session_cache, seed=0, settings=QUICK,
                                            log=messages.append)  # fmt: skip
    model, tokenizer = load_qwen3(directory), load_tokenizer(directory)  # the hub's layout, read the usual way
    documents = pretrain.encode_documents(splits.val[:50], tokenizer, pretrain.np.random.default_rng(7))
    trained = pretrain.text_perplexity(model, documents, tokenizer.pad_id)
    torch.manual_seed(0)
    random_lm = type(model)(model.config)  # same architecture, random weights
    untrained = pretrain.text_perplexity(random_lm, documents, tokenizer.pad_id)
    assert trained < 3.0 and untrained > 100 * trained, (trained, untrained)  # it learned the captions' language
    info = json.loads((directory / pretrain.INFO_FILE).read_text())
    assert info["val_perplexity"] < 3.0 and info["random_init_val_perplexity"] > 100

    # Cached by content: the same call reuses it; another seed is another model.
    assert pretrain.pretrained_demo_lm(splits.train, splits.val, session_cache, seed=0, settings=QUICK,
                                       log=messages.append) == directory  # fmt: skip
    assert messages[-1].startswith("reusing the pretrained demo LM")
    assert pretrain.cache_key(splits.train, QUICK, 1) != pretrain.cache_key(splits.train, QUICK, 0)
    assert pretrain.cache_key(splits.train[:-1], QUICK, 0) != pretrain.cache_key(splits.train, QUICK, 0)


def test_pretraining_stops_at_max_steps_where_its_schedule_ends(session_cache, monkeypatch):
    splits, _ = load_dataset("shapes", cache_dir=session_cache, split="random", seed=0)
    records = splits.train[:20]  # 10 steps an epoch at 2 documents a step
    tokenizer = pretrain.demo_tokenizer(records)
    model = pretrain.Qwen3ForCausalLM(pretrain.demo_config(tokenizer.vocab_size, tokenizer.eos_id))
    rates, step = [], torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a: rates.append(self.param_groups[0]["lr"]) or step(self)
    )
    logged = []
    settings = pretrain.PretrainSettings(epochs=3, batch_size=2, warmup_steps=2, max_steps=14)
    pretrain.pretrain(model, records, tokenizer, settings, seed=0, log=logged.append)
    schedule = pretrain.lr_lambda(settings.warmup_steps, 14)  # warm-up, then a decay that ends at step 14, not 30
    assert rates == pytest.approx([settings.lr * schedule(i) for i in range(14)])
    assert logged[-1].startswith("pretraining epoch 2/3") and logged[-1].endswith("(stopped at max_steps=14)")
    with pytest.raises(ValueError, match="max_steps=0 is invalid"):
        pretrain.PretrainSettings(max_steps=0)


def test_documents_hold_every_caption_and_answer_in_the_training_format(trained_demo):
    splits, _ = load_dataset("shapes", cache_dir=trained_demo[1], split="random", seed=0)
    record = splits.train[0]
    tokenizer = load_tokenizer(trained_demo[0] / "demo_decoder_seed0")
    (document,) = pretrain.encode_documents([record], tokenizer, pretrain.np.random.default_rng(0))
    text = tokenizer.decode(document, skip_special_tokens=False)
    items = text.split("<|endoftext|>")[:-1]
    assert sorted(items) == sorted(p + t for p, t in pretrain.document_items(record))
    assert any(i.startswith("Caption: ") for i in items) and any(i.startswith("Question: ") for i in items)


def test_frozen_pretrained_lm_with_top_k_0_trains_the_bridge_only(session_cache, tmp_path, monkeypatch,
                                                                   quick_pretraining):  # fmt: skip
    built = {}
    build_vlm = training.run.build_vlm

    def remember(config, decoder, device, seed=None):
        built["model"] = build_vlm(config, decoder, device, seed)
        built["before"] = {k: v.clone() for k, v in built["model"].decoder.state_dict().items()}
        built["bridge"] = {k: v.clone() for k, v in built["model"].bridge.state_dict().items()}
        return built["model"]

    monkeypatch.setattr(training.run, "build_vlm", remember)
    argv = ["--demo", "--decoder", "demo-pretrained", "--top-k", "0", "--max-steps", "5", "--wandb", "disabled"]
    argv += ["--output-dir", str(tmp_path), "--cache-dir", str(session_cache)]
    with contextlib.redirect_stderr(io.StringIO()):
        training.run.run(load_config(argv, env={}))
    after = built["model"].decoder.state_dict()
    assert all(torch.equal(built["before"][k], after[k]) for k in after)  # bit-identical: the LM stayed frozen
    assert any(not torch.equal(built["bridge"][k], v) for k, v in built["model"].bridge.state_dict().items())
    weights, meta = read_checkpoint(find_checkpoint(tmp_path, {"encoder": "tiny", "top_k": 0}))
    assert all(k.startswith("bridge.") for k in weights)
    assert "demo-lm" in meta["decoder"]["source"]  # the sidecar names the pretrained LM, so --test can rebuild it


def test_random_init_decoder_has_the_sources_layout_and_tokenizer_and_new_weights(trained_demo, tmp_path):
    """--decoder random-init:SOURCE (the transfer grid's control on real weights): SOURCE's config and tokenizer,
    weights drawn afresh, saved beside the checkpoints so that the sidecar names a loadable decoder."""
    # A "trained" source: the demo decoder's weights shifted, so that no random draw can reproduce them.
    demo_dir, source = trained_demo[0] / "demo_decoder_seed0", tmp_path / "trained-lm"
    trained = load_qwen3(demo_dir)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    save_qwen3(trained, source)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(demo_dir / name, source / name)
    argv = ["--demo", "--decoder", f"random-init:{source}", "--max-steps", "2", "--wandb", "disabled"]
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main([*argv, "--output-dir", str(tmp_path), "--cache-dir", str(trained_demo[1])]) == 0
    _, meta = read_checkpoint(find_checkpoint(tmp_path, {"encoder": "tiny", "top_k": 2}))
    random_dir = tmp_path.resolve() / "random_init_trained-lm_seed0"
    assert meta["decoder"]["source"] == str(random_dir)
    random, original = load_qwen3(random_dir), load_qwen3(source)
    assert random.config == original.config
    assert (random_dir / "tokenizer.json").read_bytes() == (source / "tokenizer.json").read_bytes()
    weights = original.state_dict()
    assert not any(torch.equal(v, weights[k]) for k, v in random.state_dict().items() if k.endswith("proj.weight"))


def run_experiments(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments", *argv], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["nosuch"], "error: grid 'nosuch' is unknown; accepted: transfer, views, two-stage, what-trains, smoke"),
        (
            ["transfer", "--k", "0,5"],
            "error: top_k=5 is invalid; the decoder has 3 blocks (accepted: 0..3)",
        ),
        (["transfer", "--k", "two"], "error: --k value 'two' is invalid; accepted: integers 0..3 or 'all'"),
        (["views", "--views", "pooled,patches"], "error: --views value 'patches' is invalid; accepted: pooled, hidden"),
        (["views", "--tokens", "4,16"], "error: num_visual_tokens=16 is invalid for the tiny encoder's hidden states"),
        (["--seeds", "a"], "error: --seeds 'a' is invalid; expected comma-separated integers >= 0"),
        (["two-stage", "--epochs", "1"], "error: --stage1-epochs 1 is invalid with --epochs 1; accepted: 1..0"),
    ],
)
def test_bad_grid_names_and_values_are_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    from experiments.__main__ import main

    assert main([*argv, "--results-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(expected), captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()  # nothing trained


def test_the_command_line_answers_a_bad_grid_in_one_line(tmp_path):
    """The same through `python -m experiments` in a fresh interpreter: status 2, one line, nothing trained."""
    result = run_experiments("nosuch", "--results-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: grid 'nosuch' is unknown; accepted: transfer, views, two-stage, what-trains, smoke"
    )
    assert not (tmp_path / "w").exists()


def test_smoke_grid_writes_records_table_and_figures_and_a_rerun_skips_them(session_cache, tmp_path,
                                                                             quick_pretraining):  # fmt: skip
    from experiments.__main__ import main

    argv = ["smoke", "--seeds", "0", "--jobs", "1", "--wandb", "disabled", "--cache-dir", str(session_cache)]
    argv += ["--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    assert "smoke: 2 (cell, seed) runs: 0 reused" in printed.getvalue() and "2 to train" in printed.getvalue()
    grid = tmp_path / "results" / "smoke"
    records = {p.name: json.loads(p.read_text()) for p in (grid / "cells").glob("*.json")}
    assert sorted(records) == ["pretrained-k0-seed0.json", "random-k0-seed0.json"]
    for record in records.values():
        assert record["configs"][0]["top_k"] == 0 and record["seed"] == 0 and record["trainable_parameters"] > 0
        assert record["configs"][0]["wandb_group"] == "smoke"  # one W&B group per grid
        assert {"cider_d", "qa_exact_match", "i2t_recall@1"} <= set(record["metrics"])
        assert "cider_d" in record["shuffled"] and record["history"][-1]["step"] == 4
    assert records["pretrained-k0-seed0.json"]["configs"][0]["decoder"] == "demo-pretrained"
    assert records["random-k0-seed0.json"]["configs"][0]["decoder"] == "demo"
    # The forgetting measure: K = 0 leaves the frozen LM as it was, so its weather perplexity is unchanged; a random LM
    # knows no text to forget, and records none.
    forgetting = records["pretrained-k0-seed0.json"]["text_perplexity"]
    assert forgetting["text"] == "held-out weather reports" and forgetting["before"] == forgetting["after"]
    assert records["random-k0-seed0.json"]["text_perplexity"] is None
    table = (grid / "table.md").read_text()
    assert "| pretrained-k0 | 1 |" in table and "| random-k0 | 1 |" in table
    for figure in ("metrics_vs_k.png", "curves.png"):
        assert (grid / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stamps = {name: (grid / "cells" / name).stat().st_mtime_ns for name in records}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    said = printed.getvalue()  # how many records it reused, and how many runs it trained
    assert "smoke: 2 (cell, seed) runs: 2 reused from their records in " in said and "0 to train" in said
    assert "smoke: trained 0 runs in " in said and "reused 2 records" in said
    assert {name: (grid / "cells" / name).stat().st_mtime_ns for name in records} == stamps


def test_one_what_trains_cell_records_its_cost_and_what_it_made_the_lm_forget(session_cache, tmp_path,
                                                                             quick_pretraining):  # fmt: skip
    """One cell of `python -m experiments what-trains` (LoRA rank 4 on every block), cut to 6 steps: its record holds
    the trainable parameters, AdamW's state as allocated, the step time, and the weather perplexity before and after,
    which LoRA moved (the grid itself takes 30 minutes: not in the tests)."""
    from dataclasses import replace

    from demo.decoders import demo_config
    from experiments.__main__ import build_parser, setup_for
    from experiments.grids import GridOptions, matching_rank, what_trains
    from experiments.runner import run_cell

    args = build_parser().parse_args(["what-trains", "--wandb", "disabled", "--cache-dir", str(session_cache),
                                      "--results-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")])  # fmt: skip
    args.argv = ["what-trains"]
    setup, options, config = setup_for("what-trains", args)
    assert options.epochs == 2  # the grid's cut to fit its 30 minutes
    cells = {cell.name: cell for cell in what_trains(GridOptions(), config)}
    assert len(cells) == 10 * 3 and matching_rank(demo_config(), 1) == 24  # 24 x 2,048 x 3 blocks ~ one block
    cell = cells["lora-r4-lr0.01"]
    short = {"max_steps": 6, "eval_images": 10, "gallery_size": 5}
    record = run_cell(setup, replace(cell, stages=({**cell.stages[0], **short},)), seed=0)
    assert record["configs"][0]["lora_rank"] == 4 and record["configs"][0]["lr_lora"] == 0.01
    trainable = record["trainable_parameters"]
    assert trainable == 4 * 2_048 * 3 + 41_344  # the adapters of 3 blocks and the bridge
    assert 8 * trainable <= record["optimizer_state_bytes"] < 8 * trainable + 4_096  # two fp32 moments (+ step counts)
    assert 0 < record["step_seconds"] < 5
    forgetting = record["text_perplexity"]
    assert forgetting["before"] < 10 and forgetting["after"] != forgetting["before"]


def test_a_run_that_fails_is_one_line_and_the_grids_other_records_are_still_written(tmp_path, monkeypatch):
    """One (cell, seed) raising must not lose the others' records (they took minutes each): the grid says which
    failed, writes the rest, and ends in one line; a rerun trains only what is missing."""
    import experiments.runner as runner
    from experiments.grids import Cell
    from training.config import TrainConfig

    setup = runner.Setup("g", {"data": "shapes"}, "demo-pretrained", "demo", tmp_path / "r", tmp_path / "w", "cmd")
    cells = [Cell(name, ({"lm": "pretrained"},), {}) for name in ("a", "b", "c")]

    def fake_run_cell(setup, cell, seed):
        if cell.name == "b":
            raise ValueError("a bad setting")
        key = runner.config_key(runner.cell_configs(setup, cell, seed))
        return {"cell": cell.name, "seed": seed, "key": key, "metrics": {}, "shuffled": {}, "wall_seconds": 1}

    monkeypatch.setattr(runner, "run_cell", fake_run_cell)
    said = []
    with pytest.raises(runner.UserError, match=r"^1 of 3 runs of g failed \(b seed 0\)"):
        runner.run_grid(setup, cells, [0], jobs=1, say=said.append)
    assert any(line.startswith("g b seed 0 failed: ValueError: a bad setting") for line in said)
    assert sorted(p.name for p in (tmp_path / "r" / "g" / "cells").iterdir()) == ["a-seed0.json", "c-seed0.json"]
    assert isinstance(runner.cell_configs(setup, cells[0], 0)[0], TrainConfig)
