"""Train once, reuse everywhere: model checkpoints cached by name, profile and config.

Later chapters reuse earlier models (the CNN classifier judges generated images, the tiny GPT is
adapted with LoRA).  They call the earlier chapter's function, which goes through
:func:`load_or_train`: the first call trains and saves safetensors under
``<cache>/checkpoints/``; later calls (any notebook, any process) load it in a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from .config import LabConfig, cache_dir, say


def checkpoint_path(name: str, profile: str, config: dict) -> Path:
    """``<cache>/checkpoints/<name>-<profile>-<hash of config>.safetensors``."""
    if not name or not isinstance(name, str) or "/" in name:
        raise ValueError(f"name must be a non-empty str without '/', got {name!r}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return cache_dir() / "checkpoints" / f"{name}-{profile}-{digest}.safetensors"


def load_or_train(name: str, cfg: LabConfig, config: dict, build: Callable[[], "torch.nn.Module"],  # noqa: F821
                  train: Callable[["torch.nn.Module"], dict | None], *, retrain: bool = False,  # noqa: F821
                  verbose: bool = True):
    """Return ``(model, meta)``: loaded from the cache, or built, trained and saved.

    Args:
        name: checkpoint family, e.g. ``"cnn-digits"``.
        cfg: the :class:`LabConfig` (its profile is part of the key).
        config: every hyper-parameter that changes the weights (part of the key).
        build: ``build() -> model`` with freshly initialised weights.
        train: ``train(model) -> dict`` of metrics to remember (stored beside the weights).
        retrain: ignore a cached checkpoint.
    Returns:
        The model on ``cfg.device`` in eval mode, and the metadata dict (``metrics``, ``seconds``).
    """
    from safetensors.torch import load_model, save_model

    path = checkpoint_path(name, cfg.profile, config)
    meta_path = path.with_suffix(".json")
    model = build()
    if path.is_file() and meta_path.is_file() and not retrain:
        load_model(model, str(path), device="cpu")
        meta = json.loads(meta_path.read_text())
        if verbose:
            say(f"[genai_lab] loaded cached {name} ({cfg.profile}) from {path.name}")
        return model.to(cfg.device).eval(), meta
    model.to(cfg.device)
    start = time.perf_counter()
    metrics = train(model) or {}
    meta = {"name": name, "profile": cfg.profile, "config": config, "metrics": metrics,
            "seconds": round(time.perf_counter() - start, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # parallel test workers may train the same one
    save_model(model, str(tmp))  # handles tied weights (e.g. a GPT's embedding and head)
    tmp.replace(path)
    meta_path.write_text(json.dumps(meta, indent=1, default=str))
    return model.eval(), meta
