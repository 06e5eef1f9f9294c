"""The real CLIP (OpenAI's ViT-B/32 through transformers) as a zero-shot classifier of the chapter's
images, for the ``gpu`` profile when the hub is reachable.  Kept apart from :mod:`genai_lab.clip`
(the small CLIP we train), which re-exports both functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch


def pretrained_clip_predict(model, processor, images: "torch.Tensor", class_names: Sequence[str], *,
                            batch_size: int = 256) -> "torch.Tensor":
    """Zero-shot class ids ``(N,)`` from a transformers ``CLIPModel`` and its ``CLIPProcessor``.

    Images ``(N, 1, H, W)`` in ``[0, 1]`` become 8-bit RGB (the processor resizes them to the
    model's input size); the prompts are ``"a photo of a {class name}."``.  The model's
    ``logits_per_image`` ``(B, C)`` are its scaled cosine similarities.
    """
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got {getattr(images, 'shape', type(images))}")
    if isinstance(class_names, str) or len(class_names) < 2:
        raise ValueError("class_names must list at least two class names")
    device = next(model.parameters()).device
    prompts = [f"a photo of a {name.lower()}." for name in class_names]
    text = processor(text=prompts, return_tensors="pt", padding=True)
    preds = []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            rgb = (images[s:s + batch_size].repeat(1, 3, 1, 1) * 255).round().to(torch.uint8)
            pixels = processor(images=list(rgb), return_tensors="pt")["pixel_values"]
            out = model(input_ids=text["input_ids"].to(device),
                        attention_mask=text["attention_mask"].to(device),
                        pixel_values=pixels.to(device))
            preds.append(out.logits_per_image.argmax(-1).cpu())
    return torch.cat(preds)


def hub_clip_zero_shot(images: "torch.Tensor", labels: "torch.Tensor", class_names: Sequence[str], *,
                       device=None) -> float | None:
    """Zero-shot accuracy of the real CLIP ViT-B/32 from the hub (:func:`pretrained_clip_predict`),
    or ``None`` when it is neither cached nor reachable."""
    import torch

    from .models import hub_model_path

    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    path = hub_model_path("clip")
    if path is None:
        return None
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(path)
    model = CLIPModel.from_pretrained(path).to(torch.device(device or "cpu"))
    preds = pretrained_clip_predict(model, processor, images, class_names)
    return float((preds == labels.cpu()).double().mean())
