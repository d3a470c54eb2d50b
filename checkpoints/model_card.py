"""The model card (`README.md`) of a checkpoint pushed to the Hugging Face Hub: metadata the hub reads, and the text.

The card starts with a YAML block the hub indexes (https://huggingface.co/docs/hub/model-cards#model-card-metadata):
`base_model` (the decoder the bridge and blocks were trained on, when it is a hub model: a local decoder has no id),
`datasets` (hub datasets the training data came from), `pipeline_tag: image-to-text`, `library_name`, `license` and
`tags`. It is written with `huggingface_hub.ModelCardData`, and read back the same way by the tests.

The text says what the repo holds and what it does not: a checkpoint of this project holds only what trained (the
bridge and the decoder's top K blocks); the frozen decoder and encoder are rebuilt from the sources the sidecar
names. Every number in it comes from the sidecar (validation metrics of the checkpoint's epoch) or from the run's
`metrics.json` (a `train.py --test` of this checkpoint), with the protocol they were measured under.

Read next: `checkpoints/share.py`, which stages the card beside the checkpoint and uploads both.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCardData

from bridge.vlm import VLMConfig
from checkpoints.store import HUB_DECODER_DIR, HUB_PREFIX, HUB_SIDECAR, HUB_WEIGHTS
from data.flickr30k import DEFAULT_HUB_REPO

LIBRARY_NAME = "tiny-vlm"
LICENSE = "apache-2.0"  # the project's licence (pyproject.toml); Qwen3-0.6B-Base is Apache-2.0 too
ENCODER_DESCRIPTIONS = {  # --encoder -> what it is, and what its "default" weights are (vision/encoders.py)
    "vit": ("timm `vit_base_patch16_224` (ViT-B/16)", "augreg2_in21k_ft_in1k"),
    "clip": ("the image tower of open_clip `ViT-B-32` (CLIP ViT-B/32)", "openai"),
    "tiny": ("a 1-layer, 192-wide timm ViT (the tests' and offline demo's encoder)", "seeded random"),
}
VIEW_DESCRIPTIONS = {
    "pooled": "one pooled embedding per image (CLS token / CLIP image embedding) -> 2-layer MLP -> visual tokens",
    "hidden": "all last-layer tokens -> per-token MLP, the patch grid pooled to the number of visual tokens",
}
METRIC_NAMES = {  # metrics.json keys -> names in the card's table, in this order
    "loss": "loss per target token",
    "perplexity": "perplexity",
    "bleu1": "BLEU-1",
    "bleu2": "BLEU-2",
    "bleu3": "BLEU-3",
    "bleu4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider_d": "CIDEr-D",
    "spice": "SPICE",
    "qa_exact_match": "question answering, exact match",
    "qa_token_f1": "question answering, token F1",
    "i2t_recall@1": "image->text Recall@1",
    "i2t_recall@5": "image->text Recall@5",
    "t2i_recall@1": "text->image Recall@1",
    "t2i_recall@5": "text->image Recall@5",
    "i2t_precision@1": "image->text Precision@1",
    "i2t_precision@5": "image->text Precision@5",
    "t2i_precision@1": "text->image Precision@1",
    "t2i_precision@5": "text->image Precision@5",
    "shuffled/cider_d": "CIDEr-D, images shuffled (control)",
    "shuffled/bleu4": "BLEU-4, images shuffled (control)",
    "shuffled/qa_exact_match": "exact match, images shuffled (control)",
    "shuffled/qa_token_f1": "token F1, images shuffled (control)",
}


def hub_datasets(source: str) -> list[str]:
    """The hub datasets of `--data` (comma-separated sources): flickr30k and hf:OWNER/REPO; local ones have no id."""
    found = []
    for part in (p.strip() for p in str(source).split(",")):
        if part == "flickr30k":
            found.append(DEFAULT_HUB_REPO)
        elif part.startswith(HUB_PREFIX):
            found.append(part[len(HUB_PREFIX) :])
    return found


def card_metadata(sidecar: dict[str, Any], base_model: str | None) -> ModelCardData:
    """The YAML header the hub reads. `base_model`: the decoder's hub id, or None for a local decoder."""
    model = sidecar["model"]
    tags = ["vision-language", "image-captioning", "visual-question-answering", "qwen3", f"encoder-{model['encoder']}"]
    return ModelCardData(
        base_model=base_model,
        datasets=hub_datasets(sidecar.get("data", {}).get("source", "")) or None,
        pipeline_tag="image-to-text",
        library_name=LIBRARY_NAME,
        license=LICENSE,
        tags=[LIBRARY_NAME, *tags],
    )


def metrics_table(validation: dict[str, float], test: dict[str, float]) -> list[str]:
    """A markdown table of the metrics both evaluations have, one row each."""
    keys = [k for k in METRIC_NAMES if k in validation or k in test]
    keys += [
        k
        for k, v in {**validation, **test}.items()
        if k not in METRIC_NAMES and not k.startswith("n_") and isinstance(v, int | float)
    ]
    if not keys:
        return ["No metrics were recorded for this checkpoint (it was saved before its epoch's evaluation)."]

    def cell(metrics: dict[str, float], key: str) -> str:
        return f"{metrics[key]:.3f}" if isinstance(metrics.get(key), int | float) else ""

    rows = ["| metric | validation | test |", "|---|---|---|"]
    rows += [f"| {METRIC_NAMES.get(k, k)} | {cell(validation, k)} | {cell(test, k)} |" for k in keys]
    return rows


def protocol(sidecar: dict[str, Any], validation: dict[str, float], test: dict[str, float]) -> str:
    """How the numbers were measured, from the run's own settings."""
    cfg = sidecar.get("train_config", {})

    def images(metrics: dict[str, float]) -> str:
        return f"{int(metrics['n_images']):,} images" if "n_images" in metrics else "images"

    parts = [
        f"Validation: {images(validation)} of the validation split after epoch {sidecar.get('epoch', '?')}"
        + (f" (the first {cfg['eval_images']:,})" if cfg.get("eval_images") and "n_images" not in validation else "")
        + "." if validation else "Validation: not recorded.",
        f"Test: {images(test)} of the test split (`python train.py --test`)." if test else
        "Test: not measured for this checkpoint (`python train.py --test --checkpoint ...` before pushing adds it).",
        f"Captions and answers are generated greedily (at most {cfg.get('max_new_tokens', 32)} new tokens); "
        "BLEU-4 and CIDEr-D are pycocoevalcap's scorers against all reference captions of each image (CIDEr-D's "
        "document frequencies from the evaluated set); question answering is exact match and token F1 after "
        "SQuAD-style normalisation; retrieval ranks captions and images by the model's own mean log-likelihood "
        f"of each caption given each image, in galleries of {cfg.get('gallery_size', '?')} images with all their "
        "captions. The *images shuffled* rows give every sample another image's features: a model that reads the "
        "image scores far lower there.",
    ]  # fmt: skip
    return " ".join(parts)


def data_description(sidecar: dict[str, Any]) -> str:
    data = sidecar.get("data", {})
    source, split = data.get("source", "?"), data.get("split", "?")
    names = {"flickr30k": f"Flickr30k (`{DEFAULT_HUB_REPO}` on the hub)", "shapes": "the generated shapes set"}
    described = ", ".join(names.get(p.strip(), f"`{p.strip()}`") for p in str(source).split(","))
    sizes = data.get("images")  # {"train": n, "val": n, "test": n}, recorded since the data issue
    counted = f" ({sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} images)" if sizes else ""
    how = {
        "random": f"a random 80/10/10 split by image (seed {data.get('seed', '?')}){counted}",
        "karpathy": f"the data's own split (Karpathy's, for Flickr30k and COCO){counted}",
    }.get(split, f"the {split} split{counted}")
    return f"{described}, {how}; trained on: {', '.join(data.get('tasks', [])) or '?'}."


def lora_alpha(model: dict) -> float:
    """The alpha of a sidecar's LoRA settings (`VLMConfig.lora_scale_alpha`: 2 x rank unless it was set)."""
    return VLMConfig(**model).lora_scale_alpha


def model_card(
    sidecar: dict[str, Any],
    repo_id: str,
    *,
    base_model: str | None,
    decoder_note: str,
    trainable_parameters: int,
    test_metrics: dict[str, float] | None = None,
) -> str:
    """The whole README.md: YAML metadata, then the text.

    `decoder_note` says where the frozen decoder comes from (a hub id, or carried in the repo);
    `trainable_parameters` counts the tensors in the uploaded weights.
    """
    model, cfg = sidecar["model"], sidecar.get("train_config", {})
    encoder, default_weights = ENCODER_DESCRIPTIONS.get(model["encoder"], (model["encoder"], "?"))
    weights = model.get("encoder_weights", "default")
    weights_text = f"weights `{weights}`" + (f" ({default_weights})" if weights == "default" else "")
    if weights == "none":
        weights_text = "random weights drawn with a fixed seed (`none`)"
    validation = {k: v for k, v in sidecar.get("metrics", {}).items() if isinstance(v, int | float)}
    test = test_metrics or {}
    decoder_config = sidecar["decoder"].get("config", {})
    blocks = decoder_config.get("num_hidden_layers", "?")
    hf = f"{HUB_PREFIX}{repo_id}"
    bundled = bool(sidecar["decoder"].get("bundled"))
    what = "captioning and question-answering" if "qa" in sidecar.get("data", {}).get("tasks", []) else "captioning"
    lines = [
        card_metadata(sidecar, base_model).to_yaml().join(["---\n", "\n---"]),
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {what} model of [tiny-vlm](#how-to-use-it): a frozen vision encoder, a small "
        "trainable bridge that turns its features into visual tokens, and a Qwen3 decoder whose top "
        f"{model['top_k']} blocks were trained. This repo holds what trained"
        + (
            ", and the small local decoder it was trained on." if bundled else "; the frozen parts are fetched by name."
        ),
        "",
        "## The model",
        "",
        f"- **Decoder**: {decoder_note}; {blocks} blocks, width {decoder_config.get('hidden_size', '?')}, the top "
        f"{model['top_k']} trained (K={model['top_k']}), the rest frozen"
        + (
            f", with LoRA adapters of rank {model['lora_rank']} (alpha {lora_alpha(model):g}; on "
            f"{model.get('lora_targets', 'all')}) on the blocks below the top {model['top_k']}, learning rate "
            f"{cfg.get('lr_lora', '?')}."
            if model.get("lora_rank")
            else "."
        ),
        f"- **Vision encoder** (frozen): {encoder}, {weights_text}.",
        f"- **View**: `{model['view']}`: {VIEW_DESCRIPTIONS.get(model['view'], model['view'])}.",
        f"- **Visual tokens**: {model['num_visual_tokens']} per image, prepended to the prompt "
        "(`Caption:` or `Question: ... Answer:`).",
        f"- **Trained weights** (`{HUB_WEIGHTS}`): the bridge and the top {model['top_k']} decoder blocks"
        + (", and the LoRA adapters" if model.get("lora_rank") else "")
        + ", "
        f"{trainable_parameters:,} parameters.",
        "",
        "## Training",
        "",
        f"- **Data**: {data_description(sidecar)}",
        f"- **Run**: epoch {sidecar.get('epoch', '?')} of {cfg.get('epochs', '?')}, {sidecar.get('global_step', '?')} "
        f"optimizer steps, batch {cfg.get('batch_size', '?')}, AdamW with learning rates {cfg.get('lr_adapter', '?')} "
        f"(bridge) and {cfg.get('lr_qwen', '?')} (decoder blocks), seed {cfg.get('seed', '?')}; saved "
        f"{sidecar.get('created', '?')}.",
        "",
        "## Evaluation",
        "",
        *metrics_table(validation, test),
        "",
        protocol(sidecar, validation, test),
        "",
        "## How to use it",
        "",
        "With the code of tiny-vlm (its `caption.py` and `captioning/`, `train.py` and `training/`):",
        "",
        "```bash",
        f"python caption.py photo.jpg --checkpoint {hf}                       # a caption",
        f'python caption.py photos/ -q "what colour is the car?" --checkpoint {hf}',
        f"python train.py --test --checkpoint {hf}                            # its test split",
        f"python train.py --init-from {hf} ...                                # start another run from it",
        "```",
        "",
        "From Python:",
        "",
        "```python",
        "from PIL import Image",
        "",
        "from captioning import Captioner, Decoding",
        "from checkpoints.restore import load_trained",
        "",
        f'model, tokenizer, sidecar = load_trained("{hf}")  # the VisionLanguageModel, in eval mode',
        f'captioner = Captioner("{hf}", "cpu")  # the device by name: "auto", "cpu" or "cuda"',
        'print(captioner.run([Image.open("photo.jpg").convert("RGB")], None, Decoding()))  # [(caption, score)]',
        "```",
        "",
        "The download goes to the Hugging Face cache (`HF_HOME`); `HF_TOKEN` opens a private repo, and with "
        "`HF_HUB_OFFLINE=1` the cached copy is used. A frozen part that is neither on the machine nor reachable is "
        "one error line naming it; `caption.py --decoder DIR` and `--encoder-weights FILE` point at local copies.",
        "",
        "## What this repo does not contain",
        "",
        *not_contained(sidecar, base_model, model, weights),
        "",
        "## Files",
        "",
        f"- `{HUB_WEIGHTS}`: the trained tensors (safetensors).",
        f"- `{HUB_SIDECAR}`: the sidecar: model, decoder and tokenizer sources and configs, data, training "
        "configuration, step and metrics; the model is rebuilt from it.",
        *([f"- `{HUB_DECODER_DIR}/`: the decoder and its tokenizer."] if sidecar["decoder"].get("bundled") else []),
    ]
    return "\n".join(lines) + "\n"


def not_contained(sidecar: dict[str, Any], base_model: str | None, model: dict[str, Any], weights: str) -> list[str]:
    """What a user still needs besides this repo, one bullet each."""
    lines = []
    if sidecar["decoder"].get("bundled"):
        lines.append(
            f"- The decoder is here (`{HUB_DECODER_DIR}/`): it was a small local one, not on the hub under a name."
        )
    else:
        lines.append(
            f"- The frozen decoder and its tokenizer: fetched from `{base_model or sidecar['decoder']['source']}`."
        )
    if weights == "none":
        lines.append("- No encoder weights are needed: the encoder's random weights are drawn from a fixed seed.")
    else:
        lines.append(f"- The frozen vision encoder ({model['encoder']}, weights `{weights}`): fetched by timm or "
                     "open_clip from the hub, or a local file passed with `--encoder-weights`.")  # fmt: skip
    lines += [
        "- The training state (optimizer moments, schedule, data position): `--resume` needs the original run; "
        "`--init-from` starts a new run from these weights.",
        "- The data: it is named in the sidecar and fetched (or generated) by `train.py --test`.",
    ]
    return lines
