"""The demo's text-pretrained language model: our Qwen3 at demo size, trained on text alone, saved like a hub checkpoint.

The real system is transfer learning: Qwen3-0.6B-Base learned language from text, and a small bridge then teaches it
to see, with the language model mostly or wholly frozen (`--top-k 0` trains the bridge alone). The demo's default
decoder is *random* (`--decoder demo`), which shows captioning but not transfer. This module makes the missing piece
offline, at demo size: a language model that has read text, and never an image.

    python train.py --demo --decoder demo-pretrained --top-k 0     # the bridge alone steers a frozen pretrained LM

What it reads. One *document* per training image: the image's captions, then its questions and answers (each group in
a new random order every epoch), each item written exactly as the vision-language model will later see it:

    Caption: a red circle and a blue star<|endoftext|>Caption: two shapes: a blue star and a red circle<|endoftext|>
    ...<|endoftext|>Question: what colour is the star? Answer: blue<|endoftext|>Question: is there a square? Answer: no...

Nothing in a document names the image, so to predict a caption or an answer well the model must read the *earlier*
items of the same document: it learns to continue from context. That is the skill the bridge relies on. In the
vision-language model the context is no longer text but the visual tokens: a frozen language model that already
writes a caption consistent with an earlier one only needs the bridge to supply something that reads like one.

It also reads a second text, unrelated to the images: documents of weather reports (`demo/weather.py`), half as many
as there are images. No vision-language run shows them, so their held-out perplexity before and after a run measures
what learning to see costs the language model (`held_out_weather`; `python -m experiments what-trains`).

What it learns, measured (EXPERIMENTS.md, which quotes its perplexities): the captions' language, the weather
reports', and copying from context, which is what captioning needs. Binding an attribute to an object ("what colour is
the star?" when the context names two shapes) is not learned within the one-minute budget, at this size.

How it trains: plain next-token prediction (every position predicts the next token; padding is ignored), AdamW,
linear warm-up then cosine decay (`lr_schedule.py`, the training loop's schedule), one CPU thread, a fixed number of
epochs (or `max_steps`, where the decay then ends: the tests and notebook 05's test run use 100 steps). Training and
validation documents come from the train and validation splits: the held-out perplexities are reported, and so are a
random model's for contrast.

Where it goes: `{cache_dir}/demo-lm/<key>/` in the hub's layout (`config.json`, `model.safetensors`,
`tokenizer.json`, `tokenizer_config.json`), plus `pretraining.json` (perplexities, time, settings). `load_qwen3` and
`load_tokenizer` read it like any Qwen3 checkpoint. The key is a hash of everything that decides the result (the
training texts, the sizes, the settings and the seed), so a second run reuses the model and a change rebuilds it.

References: Radford et al. 2019 (GPT-2: language models learn tasks from context,
https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf); Tsimpoukelli
et al. 2021, Frozen (a frozen pretrained LM prompted by image features, https://arxiv.org/abs/2106.13884).

Read next: `training/decoders.py` (where `--decoder demo-pretrained` is chosen), `experiments/` (what it shows).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data import CAPTION_PROMPT, ImageRecord, question_prompt
from data.batches import encode_prompts
from demo.decoders import demo_config, demo_tokenizer
from demo.tokenizer import EOS_TOKEN
from demo.weather import weather_documents
from lr_schedule import lr_lambda
from runtime.files import file_lock
from tiny_decoder import Qwen3ForCausalLM
from weights_loader import TextTokenizer, save_qwen3

DEMO_PRETRAINED = "demo-pretrained"  # the --decoder value that means this model
PRETRAIN_FORMAT = 5  # bump when the documents or the recipe change in a way the settings below do not capture
INFO_FILE = "pretraining.json"


@dataclass(frozen=True)
class PretrainSettings:
    """How the demo's language model is pretrained. Every field is part of the cache key."""

    epochs: int = 3
    batch_size: int = 16  # documents per step
    lr: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.1
    threads: int = 1  # a model this small runs faster on one thread (measured: 51 ms a step on one, 66 ms on two)
    max_steps: int | None = None  # stop after this many steps, where the schedule then ends (None: every epoch)
    # Documents of weather reports read beside the captions (demo/weather.py): the text no vision-language run shows,
    # whose held-out perplexity measures what a run makes the LM forget (`python -m experiments what-trains`).
    weather: int = 800
    held_out_weather: int = 200

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} is invalid; expected an integer >= 1 or None")


DEFAULT_SETTINGS = PretrainSettings()


# ---------------------------------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------------------------------


def document_items(record: ImageRecord) -> list[tuple[str, str]]:
    """(prompt, target) for every caption and question of one image, as the vision-language model sees them."""
    items = [(CAPTION_PROMPT, " " + caption) for caption in record.captions]
    items += [(question_prompt(q), " " + a) for q, a in record.qa]
    return items


def encode_documents(
    records: Sequence[ImageRecord], tokenizer: TextTokenizer, rng: np.random.Generator
) -> list[list[int]]:
    """One token sequence per image: its captions, then its questions and answers, each group in an order drawn from
    `rng`, every item as `prompt target <|endoftext|>`."""
    texts = sorted({text for r in records for item in document_items(r) for text in item})
    ids = dict(zip(texts, encode_prompts(tokenizer.tokenizer, texts), strict=True))  # each distinct text once
    documents = []
    for record in records:
        items = [ids[prompt] + ids[target] + [tokenizer.eos_id] for prompt, target in document_items(record)]
        captions, questions = items[: len(record.captions)], items[len(record.captions) :]
        order = [captions[k] for k in rng.permutation(len(captions))]
        order += [questions[k] for k in rng.permutation(len(questions))]
        documents.append([token for item in order for token in item])
    return documents


def document_batch(documents: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids [B, T] and next-token targets [B, T] (-100 after the end of each document)."""
    width = max(len(d) for d in documents)
    ids = torch.full((len(documents), width), pad_id, dtype=torch.long)  # [B, T]
    targets = torch.full((len(documents), width), -100, dtype=torch.long)  # [B, T]
    for row, document in enumerate(documents):
        ids[row, : len(document)] = torch.tensor(document)
        targets[row, : len(document) - 1] = torch.tensor(document[1:])  # position t predicts token t + 1
    return ids, targets


# ---------------------------------------------------------------------------------------------------------------------
# Training and perplexity
# ---------------------------------------------------------------------------------------------------------------------


def next_token_loss(model: Qwen3ForCausalLM, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every real next token (causal attention: right padding never affects real positions)."""
    keep = targets != -100  # [B, T]
    logits = model(ids, logits_to_keep=keep)  # [N, vocab]: only positions that predict a real token
    return F.cross_entropy(logits.float(), targets[keep])


@torch.no_grad()
def text_perplexity(
    model: Qwen3ForCausalLM, documents: Sequence[list[int]], pad_id: int, batch_size: int = 64
) -> float:
    """exp(mean next-token cross-entropy) over every token of `documents`."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(documents), batch_size):
        ids, targets = document_batch(documents[start : start + batch_size], pad_id)
        n = int((targets != -100).sum())
        total += next_token_loss(model, ids, targets).item() * n
        count += n
    model.train(was_training)
    return math.exp(total / max(count, 1))


def encode_texts(texts: Sequence[str], tokenizer: TextTokenizer) -> list[list[int]]:
    """Plain documents (the weather reports) as token ids, each followed by `<|endoftext|>`."""
    return [ids + [tokenizer.eos_id] for ids in encode_prompts(tokenizer.tokenizer, list(texts))]


def pretrain(
    model: Qwen3ForCausalLM,
    train: Sequence[ImageRecord],
    tokenizer: TextTokenizer,
    settings: PretrainSettings,
    seed: int,
    log: Callable[[str], None] = print,
    extra: Sequence[list[int]] = (),
) -> None:
    """Next-token training of `model` on the documents of `train` (a new item order every epoch), and the `extra`
    documents (the weather reports) as they are."""
    documents = encode_documents(train, tokenizer, np.random.default_rng([seed, 0])) + list(extra)
    steps_per_epoch = math.ceil(len(documents) / settings.batch_size)
    total = min(steps_per_epoch * settings.epochs, settings.max_steps or math.inf)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        betas=(0.9, 0.95),
        fused=True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings.warmup_steps, total))
    model.train()
    done = 0
    for epoch in range(math.ceil(total / steps_per_epoch)):
        rng = np.random.default_rng([seed, epoch])
        if epoch:  # new contexts every epoch
            documents = encode_documents(train, tokenizer, rng) + list(extra)
        order = rng.permutation(len(documents))
        running = 0.0
        steps = min(steps_per_epoch, total - done)
        for step in range(steps):
            rows = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            ids, targets = document_batch([documents[i] for i in rows], tokenizer.pad_id)
            loss = next_token_loss(model, ids, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            running += loss.item()
        done += steps
        cut = f" (stopped at max_steps={total})" if steps < steps_per_epoch else ""
        log(f"pretraining epoch {epoch + 1}/{settings.epochs}: text loss {running / steps:.3f}{cut}")


# ---------------------------------------------------------------------------------------------------------------------
# Built once, cached by content
# ---------------------------------------------------------------------------------------------------------------------


def cache_key(train: Sequence[ImageRecord], settings: PretrainSettings, seed: int) -> str:
    """A hash of everything the pretrained model depends on: format, settings, sizes, seed and the training text."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": PRETRAIN_FORMAT, "settings": asdict(settings), "seed": seed}).encode())
    digest.update(json.dumps(demo_config().to_dict(), sort_keys=True).encode())
    for record in train:
        digest.update(json.dumps([record.image_id, record.captions, record.qa]).encode())
    return digest.hexdigest()[:16]


def held_out_weather(seed: int, settings: PretrainSettings | None = None) -> list[str]:
    """Held-out weather reports (demo/weather.py): documents of the pretraining distribution that pretraining never
    read, and that no vision-language run shows. Their perplexity before and after a run is the forgetting measure
    (`experiments/forgetting.py`)."""
    return weather_documents((settings or DEFAULT_SETTINGS).held_out_weather, seed, held_out=True)


def texts_perplexity(model: Qwen3ForCausalLM, tokenizer: TextTokenizer, texts: Sequence[str]) -> float:
    """`text_perplexity` of plain texts, each a document ending with `<|endoftext|>`."""
    return text_perplexity(model, encode_texts(texts, tokenizer), tokenizer.pad_id)


def pretrained_demo_lm(
    train: Sequence[ImageRecord],
    val: Sequence[ImageRecord],
    cache_dir: Path,
    seed: int = 0,
    settings: PretrainSettings | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The directory of the demo's text-pretrained LM: built from `train`'s text on first use, then reused.

    One process builds it; others that need it at the same time (`python -m experiments --jobs 2`) wait for it on
    a file lock, then reuse it.
    """
    settings = settings or DEFAULT_SETTINGS
    directory = Path(cache_dir) / "demo-lm" / f"seed{seed}-{cache_key(train, settings, seed)}"
    if not (directory / INFO_FILE).exists():  # written last: its presence means the directory is complete
        with file_lock(directory, "the demo's text-pretrained LM"):
            if not (directory / INFO_FILE).exists():  # else built by the process that held the lock before us
                return _pretrain_demo_lm(train, val, directory, seed, settings, log)
    info = json.loads((directory / INFO_FILE).read_text())
    log(f"reusing the pretrained demo LM {directory} (held-out text perplexity {info['val_perplexity']:.2f})")
    return directory


def _pretrain_demo_lm(
    train: Sequence[ImageRecord],
    val: Sequence[ImageRecord],
    directory: Path,
    seed: int,
    settings: PretrainSettings,
    log: Callable[[str], None],
) -> Path:
    """Pretrain the demo LM and save it into `directory` (see `pretrained_demo_lm`)."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        weather = weather_documents(settings.weather, seed)
        tokenizer = demo_tokenizer(train, extra_texts=weather)  # learned from the training text only
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(demo_config(tokenizer.vocab_size, tokenizer.eos_id))
        unseen_order = np.random.default_rng([seed, 1_000_000])  # an item order no training epoch draws
        val_documents = encode_documents(val, tokenizer, unseen_order)
        random_perplexity = text_perplexity(model, val_documents, tokenizer.pad_id)
        random_weather = texts_perplexity(model, tokenizer, held_out_weather(seed, settings))
        log(
            f"pretraining the demo LM on the text of {len(train):,} training images (no images) and "
            f"{len(weather):,} documents of weather reports"
        )
        pretrain(model, train, tokenizer, settings, seed, log, extra=encode_texts(weather, tokenizer))
        val_perplexity = text_perplexity(model, val_documents, tokenizer.pad_id)
        weather_ppl = texts_perplexity(model, tokenizer, held_out_weather(seed, settings))
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started

    # Written to a temporary directory and renamed: an interrupted build leaves nothing that looks complete.
    partial = directory.with_name(directory.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    save_qwen3(model, partial)
    tokenizer.tokenizer.save(str(partial / "tokenizer.json"))
    (partial / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN}))
    info = {
        "val_perplexity": val_perplexity,
        "random_init_val_perplexity": random_perplexity,
        "weather_perplexity": weather_ppl,
        "random_init_weather_perplexity": random_weather,
        "vocab_size": tokenizer.vocab_size,
        "train_documents": len(train),
        "val_documents": len(val),
        "seconds": round(seconds, 1),
        "seed": seed,
        "settings": asdict(settings),
        "format": PRETRAIN_FORMAT,
    }
    (partial / INFO_FILE).write_text(json.dumps(info, indent=2))
    if directory.exists():  # another process finished first: keep its copy
        shutil.rmtree(partial)
    else:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, directory)
    log(
        f"pretrained demo LM in {seconds:.0f} s: held-out text perplexity {val_perplexity:.2f} "
        f"(random init {random_perplexity:.1f}), weather reports {weather_ppl:.2f} (random init "
        f"{random_weather:.1f}) -> {directory}"
    )
    return directory
