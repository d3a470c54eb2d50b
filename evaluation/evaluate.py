"""Evaluation of the vision-language model on one split: loss, captions, answers and retrieval.

- Loss and perplexity of the split's target text (captions and answers), per target token.
- Captioning: one caption per image (greedy, or beam search with `beams` > 1: the same `tiny_decoder/beam.py` that
  caption.py uses), scored against *all* references of the image with the COCO caption evaluation code's scorers:
  BLEU-1..4, ROUGE-L and CIDEr-D always, METEOR with `settings.meteor` (`--test`), SPICE with `settings.spice`
  (`--spice`; see `metrics/captioning.py` for what each measures and needs). CIDEr-D's document frequencies come from
  the evaluated set, so the whole split is scored in one call. `settings.ptb` tokenises with the Java PTB tokenizer of
  the COCO evaluation code, as published results are.
- Question answering (when the data has questions): exact match and token F1 of greedy answers.
- Retrieval by the model's own likelihood: in galleries of G images and all their captions, every (image, caption)
  pair is scored by the mean log-likelihood of the caption given the image. Image->text and text->image
  Recall@1/5 and Precision@1/5 (definitions in `metrics/retrieval.py` and docs/evaluation.md).
- A control: the same captions and answers generated with the images shuffled between samples. A model that
  really reads the image scores far lower on it; one that only learned the language of the captions does not.

Features are the frozen encoder's, computed once (see `vision/cache.py`), so evaluation never re-runs the encoder.
They may be memory-mapped (`vision/mapped.py`): everything here indexes them a batch at a time, never whole.

Read next: `evaluation/protocol.py` (which images, which settings), then `checkpoints/__init__.py` (the README's next).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from bridge import VisionLanguageModel
from data import CAPTION_PROMPT, ImageRecord, VLMCollator, make_samples, question_prompt
from data.batches import encode_prompts
from evaluation.protocol import EvalSettings
from metrics import caption_metrics, gallery_indices, mean_over_galleries, qa_metrics, retrieval_metrics
from runtime.distributed import SINGLE_PROCESS, Distributed
from vision import ClipText
from weights_loader import TextTokenizer


@dataclass
class EvalResult:
    metrics: dict[str, float]
    samples: list[dict]  # a few images with their generated and reference captions
    notes: list[str] = field(default_factory=list)  # one line per metric that could not run here, and why


# (image, caption) pairs per forward pass when scoring retrieval galleries. A GPU needs thousands of tokens per pass to
# be busy (512 pairs x ~16 caption positions). Measured on an H200 with the earlier copied-prefix path, whose KV cache
# took ~8.7 MB a pair at Qwen3-0.6B's size in fp32 (4.5 GB for 512 pairs); the shared prefix keeps one cache row per
# image, so a pair now costs only its activations, and larger passes fit (not yet measured on a GPU).
RETRIEVAL_PAIRS_PER_FORWARD = 512


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


@torch.no_grad()
def split_loss(
    model: VisionLanguageModel,
    records: Sequence[ImageRecord],
    features: torch.Tensor,
    tokenizer: TextTokenizer,
    tasks: Sequence[str],
    batch_size: int,
    max_target_tokens: int,
    device: torch.device,
    autocast,
    dist: Distributed = SINGLE_PROCESS,
) -> float:
    """Mean cross-entropy per target token over every sample of the split (shared out across processes)."""
    collate = VLMCollator(tokenizer.tokenizer, tokenizer.eos_id, tokenizer.pad_id, max_target_tokens)
    samples = dist.shard(make_samples(records, tasks))
    total, tokens = 0.0, 0
    for rows in _batches(len(samples), batch_size):
        batch = collate([samples[i] for i in rows])
        n = int((batch["labels"] != -100).sum())
        with autocast():
            loss = model(
                batch["input_ids"].to(device),
                batch["labels"].to(device),
                features=features[batch["image_index"]].to(device),
            )
        total += loss.item() * n
        tokens += n
    return dist.sum(total) / max(dist.sum(tokens), 1)


@torch.no_grad()
def generate_texts(
    model: VisionLanguageModel,
    features: torch.Tensor,
    prompts: Sequence[str],
    tokenizer: TextTokenizer,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    autocast,
    dist: Distributed = SINGLE_PROCESS,
    beams: int = 1,
    length_penalty: float = 1.0,
    image_rows: Sequence[int] | None = None,
) -> list[str]:
    """Continuation of prompts[i] given features[image_rows[i]] (default: features[i]); each process generates its
    share. Features are gathered a batch at a time: a memory-mapped cache stays on disk.

    Greedy with `beams` = 1; otherwise `VisionLanguageModel.beam_search`, as caption.py runs it (`tiny_decoder/beam.py`,
    early stopping once `beams` hypotheses have finished), so evaluation's captions are the ones a user would get.
    """
    image_rows = range(len(prompts)) if image_rows is None else image_rows
    mine = dist.shard(range(len(prompts)))
    prompt_ids = encode_prompts(tokenizer.tokenizer, [prompts[i] for i in mine])
    eos = tokenizer.eos_id
    out: list[str] = []
    for rows in _batches(len(mine), batch_size):
        batch_prompts = [prompt_ids[i] for i in rows]
        batch_features = features[[image_rows[mine[i]] for i in rows]].to(device)
        with autocast():
            if beams > 1:
                ids, _ = model.beam_search(
                    batch_prompts, features=batch_features, num_beams=beams, max_new_tokens=max_new_tokens,
                    length_penalty=length_penalty, eos_token_id=eos,
                )  # fmt: skip
            else:
                ids = model.generate(
                    batch_prompts,
                    features=batch_features,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_id,
                )
        out.extend(tokenizer.decode(row).strip() for row in ids)
    return dist.gather_sharded(out, len(prompts))


@torch.no_grad()
def likelihood_scores(
    model: VisionLanguageModel,
    features: torch.Tensor,
    captions: Sequence[str],
    tokenizer: TextTokenizer,
    batch_size: int,
    max_target_tokens: int,
    device: torch.device,
    autocast,
    pairs_per_forward: int = RETRIEVAL_PAIRS_PER_FORWARD,
) -> torch.Tensor:
    """scores[i, j] = mean log-likelihood of caption j given image i: [n_images, n_captions].

    Captions go in batches of `batch_size`; each forward pass scores one batch against as many images as fit in
    `pairs_per_forward` (image, caption) pairs, every caption attending to its image's prefix where it is cached
    (`VisionLanguageModel.shared_prefix_log_likelihood`).
    """
    collate = VLMCollator(tokenizer.tokenizer, tokenizer.eos_id, tokenizer.pad_id, max_target_tokens)
    from data import Sample

    # Captions in batches of similar length: each batch is padded only to its own longest caption. The scores
    # are written back to each caption's own column, so the order changes nothing but the padding.
    lengths = [len(ids) for ids in encode_prompts(tokenizer.tokenizer, [" " + c for c in captions])]
    order = sorted(range(len(captions)), key=lambda j: lengths[j])
    prompt_len = len(encode_prompts(tokenizer.tokenizer, [CAPTION_PROMPT])[0])
    scores = torch.empty(len(features), len(captions))
    for rows in _batches(len(captions), batch_size):
        columns = order[rows.start : rows.stop]
        encoded = collate([Sample(0, CAPTION_PROMPT, " " + captions[j], "caption") for j in columns])
        input_ids, labels = encoded["input_ids"].to(device), encoded["labels"].to(device)  # [b, T] each
        for images in _batches(len(features), max(1, pairs_per_forward // len(columns))):
            with autocast():  # each image's visual tokens and the prompt run once for the whole batch of captions
                logp = model.shared_prefix_log_likelihood(
                    input_ids, labels, prompt_len, features=features[images.start : images.stop].to(device)
                )  # [images, b]
            scores[images.start : images.stop, columns] = logp.float().cpu()
    return scores


def clip_zero_shot_retrieval(
    text_tower: ClipText, image_embeddings: torch.Tensor, records: Sequence[ImageRecord], gallery_size: int
) -> dict[str, float]:
    """CLIP's own retrieval on the same galleries: cosine similarity of L2-normalised image and text embeddings."""
    images = torch.nn.functional.normalize(image_embeddings.float(), dim=-1)  # [n_images, 512]
    per_gallery = []
    for gallery in gallery_indices(len(records), gallery_size):
        texts = [c for i in gallery for c in records[i].captions]
        owner = torch.tensor([k for k, i in enumerate(gallery) for _ in records[i].captions])
        scores = images[gallery.start : gallery.stop] @ text_tower.encode(texts).T.cpu()  # [G, n_captions]
        per_gallery.append(retrieval_metrics(scores, owner))
    result = mean_over_galleries(per_gallery)
    return {f"clip_zero_shot/{k}": v for k, v in result.items() if not k.startswith("n_")}


def evaluate(
    model: VisionLanguageModel,
    records: Sequence[ImageRecord],
    features: torch.Tensor,
    tokenizer: TextTokenizer,
    settings: EvalSettings | None = None,
    *,
    shuffled_control: bool = True,
    retrieval: bool = True,
    device: torch.device | str = "cpu",
    autocast=None,
    clip_reference: tuple[ClipText, torch.Tensor] | None = None,
    dist: Distributed = SINGLE_PROCESS,
) -> EvalResult:
    """All metrics of one split, as a flat dict (keys like "cider_d", "i2t_recall@1", "shuffled/cider_d").

    `settings` (evaluation/protocol.py) holds what is measured and how: captions are greedy (`beams` = 1) or beam
    searched (`beams`, `length_penalty`); answers to questions are always greedy (a few words); `ptb`: caption metrics
    on the Java PTB tokenizer's tokens (needs `java`); `meteor`, `spice`: those two metrics as well. The keywords say
    where it runs: `shuffled_control` generates everything a second time with the images shuffled (scored with the
    cheap caption metrics only: no METEOR or SPICE); `clip_reference` = (CLIP's text tower, CLIP image embeddings
    [n_images, 512] of `records`) also reports CLIP's own zero-shot retrieval on the same galleries, as
    "clip_zero_shot/i2t_recall@1", ...

    METEOR and SPICE run on the main process only (one JVM, and one writer of SPICE's parse cache): under torchrun the
    other processes' metrics lack them. A metric that cannot run is absent from the metrics, and `EvalResult.notes`
    says why in one line.
    """
    s = settings or EvalSettings()
    tasks, batch_size, max_target_tokens, max_new_tokens = s.tasks, s.batch_size, s.max_target_tokens, s.max_new_tokens
    autocast = autocast or contextlib.nullcontext
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    notes: list[str] = []
    common = dict(tokenizer=tokenizer, device=device, autocast=autocast, dist=dist)

    loss = split_loss(
        model, records, features, tasks=tasks, batch_size=batch_size, max_target_tokens=max_target_tokens, **common
    )
    metrics["loss"], metrics["perplexity"] = loss, math.exp(min(loss, 50.0))

    # A fixed derangement of the images, for the control: every sample gets another image's features.
    perm = torch.randperm(len(records), generator=torch.Generator().manual_seed(s.seed))
    shuffled = (torch.roll(perm, 1)[torch.argsort(perm)] if len(records) > 1 else perm).tolist()  # image rows

    samples: list[dict] = []
    if "caption" in tasks:
        gen = dict(
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            beams=s.beams,
            length_penalty=s.length_penalty,
            **common,
        )
        captions = generate_texts(model, features, [CAPTION_PROMPT] * len(records), **gen)
        refs = {r.image_id: r.captions for r in records}
        generated = {r.image_id: c for r, c in zip(records, captions, strict=True)}
        expensive = dict(meteor=s.meteor and dist.is_main, spice=s.spice and dist.is_main)  # Java programs: rank 0
        metrics.update(caption_metrics(refs, generated, use_ptb=s.ptb, notes=notes, **expensive))
        samples = [
            {"image": str(r.path), "generated": c, "references": r.captions}
            for r, c in zip(records[: s.num_samples], captions, strict=False)
        ]
        if shuffled_control:
            wrong = generate_texts(model, features, [CAPTION_PROMPT] * len(records), image_rows=shuffled, **gen)
            control = caption_metrics(refs, {r.image_id: c for r, c in zip(records, wrong, strict=True)}, use_ptb=s.ptb)
            metrics.update({f"shuffled/{k}": v for k, v in control.items()})

    qa_items = [(i, q, a) for i, r in enumerate(records) for q, a in r.qa]
    if "qa" in tasks and qa_items:
        index = [i for i, _, _ in qa_items]  # the image row of each question
        prompts = [question_prompt(q) for _, q, _ in qa_items]
        gen = dict(batch_size=batch_size, max_new_tokens=min(max_new_tokens, 8), **common)
        answers = generate_texts(model, features, prompts, image_rows=index, **gen)
        metrics.update({f"qa_{k}": v for k, v in qa_metrics(answers, [[a] for _, _, a in qa_items]).items()})
        for sample in samples:  # show one question per sample image
            i = next((k for k, (j, _, _) in enumerate(qa_items) if str(records[j].path) == sample["image"]), None)
            if i is not None:
                sample.update(question=qa_items[i][1], answer=answers[i], expected=qa_items[i][2])
        if shuffled_control:
            wrong = generate_texts(model, features, prompts, image_rows=[shuffled[i] for i in index], **gen)
            control = qa_metrics(wrong, [[a] for _, _, a in qa_items])
            metrics.update({f"shuffled/qa_{k}": v for k, v in control.items()})

    if retrieval and "caption" in tasks and len(records) > 1:
        per_gallery = []
        galleries = gallery_indices(len(records), s.gallery_size)
        for gallery in dist.shard(galleries):  # each process scores its share of the galleries
            texts = [c for i in gallery for c in records[i].captions]
            owner = torch.tensor([k for k, i in enumerate(gallery) for _ in records[i].captions])
            scores = likelihood_scores(
                model, features[gallery.start : gallery.stop], texts, batch_size=max(batch_size, 64),
                max_target_tokens=max_target_tokens, tokenizer=tokenizer, device=device, autocast=autocast,
            )  # fmt: skip
            per_gallery.append(retrieval_metrics(scores, owner))
        metrics.update(mean_over_galleries(dist.gather_sharded(per_gallery, len(galleries))))
        if clip_reference is not None:
            metrics.update(clip_zero_shot_retrieval(*clip_reference, records, s.gallery_size))

    model.train(was_training)
    return EvalResult(metrics, samples, notes)
