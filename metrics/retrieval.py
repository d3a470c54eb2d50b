"""Image-text retrieval metrics: Recall@K and Precision@K in both directions.

Retrieval asks: given a query, are the right items near the top of the ranked gallery? A model gives a
score to every (image, caption) pair -- a cosine similarity of embeddings, or the log-likelihood of the
caption given the image -- and we rank with it. With a score matrix `scores[i, c]` and the index of the
image each caption belongs to (`caption_image[c]`; COCO/Flickr30k have ~5 captions per image):

* Image -> text (i2t): each image is a query, the captions are the gallery.
    Recall@K    = share of images with at least one of their own captions among the top K captions.
    Precision@K = mean over images of (number of their own captions in the top K) / K.
* Text -> image (t2i): each caption is a query, the images are the gallery.
    Recall@K    = share of captions whose image is among the top K images.
    Precision@K = hits / K; each caption has exactly one right image, so this is Recall@K / K.

Recall@K is the number retrieval papers report (e.g. Karpathy & Fei-Fei, 2015, "Deep Visual-Semantic
Alignments", https://arxiv.org/abs/1412.2306; CLIP, Radford et al., 2021, https://arxiv.org/abs/2103.00020).
Precision@K says how much of the top K is relevant, which Recall@K ignores.

Details a reader of the numbers should know:

* K larger than the gallery is clamped to the gallery size: "@5" over a gallery of 3 captions looks at
  all 3 (Recall is then 1) and Precision divides by 3, not 5. Keys keep the requested K.
* Ties are broken pessimistically: among items with equal scores, the wrong ones are ranked first. A model
  that gives every pair the same score thus gets Recall@1 = 0 instead of credit for an arbitrary order
  (`torch.topk` does not specify the order of ties, so we rank with a stable two-key sort instead).
* Everything is batched: one sort per direction ranks every query at once; it runs on the scores' device.
* Scores from a generative model cost one forward pass per (image, caption) pair, so the usual protocol is
  to split the test images into galleries (e.g. 5 x 1k images for COCO 5k) and average:
  `gallery_indices` makes the splits and `mean_over_galleries` averages the per-gallery results.

Read next: `evaluation/evaluate.py` (the likelihood scores these rank), `docs/evaluation.md` (published results).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def _ranked_relevance(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Relevance of each query's gallery items in ranked order (best score first, wrong items first on ties).

    scores: [n_queries, n_items] floats; relevant: [n_queries, n_items] bools.
    Returns [n_queries, n_items] bools: entry [q, r] says whether the item at rank r of query q is relevant.
    """
    # Two stable sorts give a two-key sort: first put wrong items before right ones, then sort by score.
    # Stability keeps the wrong-first order among equal scores.
    by_relevance = torch.argsort(relevant.to(torch.int8), dim=1, stable=True)  # [n_queries, n_items]
    scores_1 = scores.gather(1, by_relevance)  # [n_queries, n_items], wrong items first
    by_score = torch.argsort(scores_1, dim=1, descending=True, stable=True)  # [n_queries, n_items]
    return relevant.gather(1, by_relevance).gather(1, by_score)  # [n_queries, n_items]


def _at_k(direction: str, ranked: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K and Precision@K from ranked relevance [n_queries, n_items] for every K in `ks`."""
    recalls, precisions = {}, {}
    for k in ks:
        k_eff = min(k, ranked.shape[1])  # K larger than the gallery: look at the whole gallery
        hits = ranked[:, :k_eff].sum(dim=1).float()  # [n_queries] relevant items in the top K
        recalls[f"{direction}_recall@{k}"] = (hits > 0).float().mean().item()
        precisions[f"{direction}_precision@{k}"] = (hits / k_eff).mean().item()
    return recalls | precisions


def retrieval_metrics(
    scores: torch.Tensor, caption_image: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Recall@K and Precision@K for image->text and text->image retrieval.

    Args:
        scores: [n_images, n_captions], higher = better match (any finite floats).
        caption_image: [n_captions] integers, the index (row of `scores`) of each caption's image.
        ks: the cut-offs K; larger than the gallery is clamped (see the module docstring).

    Returns:
        Keys `i2t_recall@K`, `i2t_precision@K`, `t2i_recall@K`, `t2i_precision@K` for each K (values in
        [0, 1]), plus `n_images` and `n_captions` (the query counts, used by `mean_over_galleries`).

    Raises:
        ValueError: wrong shapes, non-finite scores, caption indices out of range, an image without any
            caption (its i2t recall would be undefined), or K < 1.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_images, n_captions], got shape {tuple(scores.shape)}")
    n_images, n_captions = scores.shape
    if caption_image.shape != (n_captions,):
        raise ValueError(
            f"caption_image must have shape [{n_captions}] (one image index per caption column of scores), "
            f"got {tuple(caption_image.shape)}"
        )
    if n_images == 0 or n_captions == 0:
        raise ValueError(f"need at least one image and one caption, got scores of shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity; ranks would be meaningless")
    if caption_image.is_floating_point() or caption_image.min() < 0 or caption_image.max() >= n_images:
        raise ValueError(f"caption_image must hold integer image indices in [0, {n_images})")
    if any(k < 1 for k in ks):
        raise ValueError(f"every K must be >= 1, got ks={tuple(ks)}")
    caption_image = caption_image.to(scores.device)
    captions_per_image = torch.bincount(caption_image, minlength=n_images)  # [n_images]
    if (captions_per_image == 0).any():
        missing = (captions_per_image == 0).nonzero().flatten()[:3].tolist()
        raise ValueError(f"every image needs at least one caption; image(s) {missing} have none")

    image_index = torch.arange(n_images, device=scores.device)
    relevant = caption_image[None, :] == image_index[:, None]  # [n_images, n_captions]
    i2t = _ranked_relevance(scores, relevant)  # [n_images, n_captions]
    t2i = _ranked_relevance(scores.T, relevant.T)  # [n_captions, n_images]
    counts = {"n_images": float(n_images), "n_captions": float(n_captions)}
    return _at_k("i2t", i2t, ks) | _at_k("t2i", t2i, ks) | counts


def gallery_indices(n_images: int, gallery_size: int = 100) -> list[range]:
    """Split image indices 0..n_images-1 into consecutive galleries of `gallery_size` (the last may be smaller).

    >>> gallery_indices(250, 100)
    [range(0, 100), range(100, 200), range(200, 250)]

    To evaluate gallery `g`, keep its images and their captions:
    `keep = (caption_image >= g.start) & (caption_image < g.stop)`, then
    `retrieval_metrics(scores[g.start:g.stop][:, keep], caption_image[keep] - g.start)`.
    """
    if n_images < 1 or gallery_size < 1:
        raise ValueError(f"n_images and gallery_size must be >= 1, got {n_images} and {gallery_size}")
    return [range(start, min(start + gallery_size, n_images)) for start in range(0, n_images, gallery_size)]


def mean_over_galleries(results: Iterable[dict[str, float]]) -> dict[str, float]:
    """Average `retrieval_metrics` results of several galleries, as if all queries had been pooled.

    Image->text metrics are weighted by each gallery's number of images (their queries), text->image
    metrics by its number of captions; so a smaller last gallery counts for less. `n_images` and
    `n_captions` are summed.
    """
    results = list(results)
    if not results:
        raise ValueError("mean_over_galleries needs at least one gallery result")
    keys = results[0].keys()
    if any(r.keys() != keys for r in results):
        raise ValueError("all gallery results must have the same keys (same ks)")
    weight_key = {"i2t": "n_images", "t2i": "n_captions"}
    out: dict[str, float] = {}
    for key in keys:
        if key in ("n_images", "n_captions"):
            out[key] = float(sum(r[key] for r in results))
            continue
        direction = key.split("_", 1)[0]
        if direction not in weight_key:
            raise ValueError(f"unexpected key {key!r}; expected i2t_*/t2i_* metrics and n_images/n_captions")
        weights = [r[weight_key[direction]] for r in results]
        out[key] = sum(w * r[key] for w, r in zip(weights, results, strict=True)) / sum(weights)
    return out
