"""How good are generated images?  Ask a classifier trained on real data, and measure spread.

- *class agreement*: the share of samples the classifier puts in the class that was requested;
- *mean confidence*: the classifier's average probability for the requested class;
- *diversity*: the mean pairwise distance between samples of the same class (and the mean
  per-pixel variance within a class).  If a generator collapses to one image per class
  (mode collapse), agreement can stay high while diversity falls towards 0, so always read
  both, and compare with the same numbers on real images.
"""

from __future__ import annotations

import torch


def _check_images_labels(images, labels) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    return labels


def diversity(images: torch.Tensor, labels) -> dict[str, float]:
    """Within-class spread of ``images (N, C, H, W)`` in ``[0, 1]`` grouped by ``labels (N,)``.

    Returns ``{"pairwise_distance": mean L2 distance between two images of the same class,
    "pixel_variance": mean over classes and pixels of the per-pixel variance}``; classes with
    fewer than two images are skipped.
    """
    labels = _check_images_labels(images, labels)
    flat = images.detach().float().cpu().flatten(1)
    dists, variances = [], []
    for c in labels.unique():
        group = flat[labels == c]
        if len(group) < 2:
            continue
        d = torch.cdist(group, group)
        n = len(group)
        dists.append(d.sum() / (n * (n - 1)))
        variances.append(group.var(dim=0).mean())
    if not dists:
        raise ValueError("labels must name at least one class with two or more images")
    return {"pairwise_distance": float(torch.stack(dists).mean()),
            "pixel_variance": float(torch.stack(variances).mean())}


@torch.no_grad()
def judge_samples(classifier: torch.nn.Module, images: torch.Tensor, labels) -> dict[str, float]:
    """Score generated ``images (N, C, H, W)`` in ``[0, 1]`` that were requested as ``labels (N,)``.

    Returns ``class_agreement`` (share classified as requested), ``mean_confidence`` (mean
    softmax probability of the requested class) and the :func:`diversity` numbers.
    """
    if not isinstance(classifier, torch.nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
    labels = _check_images_labels(images, labels)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    probs = torch.cat([classifier(chunk.to(device)).softmax(-1).cpu() for chunk in images.split(512)])
    classifier.train(was_training)
    if probs.shape != (len(labels), probs.shape[1]) or int(labels.max()) >= probs.shape[1]:
        raise ValueError(f"classifier must return (N, classes) logits covering every label, got {tuple(probs.shape)}")
    return {"class_agreement": float((probs.argmax(-1) == labels).float().mean()),
            "mean_confidence": float(probs[torch.arange(len(labels)), labels].mean()),
            **diversity(images, labels)}


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """``(num_classes · per_class,)`` labels ``0,1,…,9,0,1,…`` — every class equally often."""
    for name, value in (("num_classes", num_classes), ("per_class", per_class)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return torch.arange(num_classes).repeat(per_class)
