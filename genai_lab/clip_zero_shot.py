"""Zero-shot that is zero-shot: a small CLIP that never reads the names of three classes.

The chapter's first CLIP (:mod:`genai_lab.clip`) reads every class word in its training captions,
so its "zero-shot" accuracy measures new *sentences* about classes it has read about.  CLIP's real
claim (Radford et al. 2021, §3.1) is stronger: a class whose name never appeared in training can be
recognised from its name alone, because the text encoder already knows what the word means and
the image encoder has learned to land near the texts that describe a picture.

Here the text tower is a frozen, pretrained sentence encoder (all-MiniLM-L6-v2, loaded offline by
:func:`genai_lab.models.load_minilm`); the image tower is the chapter's
:class:`~genai_lab.clip.ImageEncoder` with a 384-wide output, so it maps images straight into the
sentence space (``project_text=False``, the default; ``True`` adds a trainable linear projection of
the sentences, which in our runs varied more from seed to seed).  Training uses only the images and
captions of the *seen* classes (:data:`SEEN_CLASSES`, seven of Fashion-MNIST's ten); the three
*unseen* classes (:data:`UNSEEN_CLASSES`: trouser, sandal, bag) are never shown, neither their
pictures nor any of their words.  At test time their prompts ("a photo of the sandal" …) are
embedded by the frozen sentence encoder, projected, and compared with test images.

Each caption is embedded by MiniLM once (cached on disk by :func:`sentence_embeddings`); training
only runs the image encoder (and the projection, if any).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .clip import CLASS_WORDS, PROMPT_TEMPLATES, TRAIN_TEMPLATES, ImageEncoder, contrastive_loss, normalize

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Classes whose images and names never appear in training: Trouser, Sandal, Bag.  One from each
#: of Fashion-MNIST's three kinds of item (clothes, footwear, accessories), none a near-copy of a
#: seen class (holding out "shirt" while training on "T-shirt" would test a confusion, not a transfer).
UNSEEN_CLASSES: tuple[int, ...] = (1, 5, 8)
#: The seven classes the zero-shot model is trained on.
SEEN_CLASSES: tuple[int, ...] = tuple(c for c in range(len(CLASS_WORDS)) if c not in UNSEEN_CLASSES)
#: Size of an all-MiniLM-L6-v2 sentence embedding.
MINILM_DIM = 384


def _check_unseen(unseen: Sequence[int]) -> tuple[int, ...]:
    n = len(CLASS_WORDS)
    if isinstance(unseen, (str, bytes)) or not isinstance(unseen, Sequence):
        raise TypeError(f"unseen must be a sequence of class ids, got {type(unseen).__name__}")
    out = tuple(unseen)
    if (len(out) < 2 or len(set(out)) != len(out) or len(out) > n - 2
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n for c in out)):
        raise ValueError(f"unseen must hold 2..{n - 2} distinct class ids in 0..{n - 1}, got {unseen!r}")
    return tuple(sorted(out))


def seen_caption_texts(unseen: Sequence[int] = UNSEEN_CLASSES) -> list[list[str]]:
    """The training captions of the zero-shot model, per class: ``[class][k]`` (templates × class
    words, as :func:`genai_lab.clip.caption_texts`); an unseen class gets an empty list."""
    unseen = _check_unseen(unseen)
    return [[] if c in unseen else [t.format(w) for t in TRAIN_TEMPLATES for w in words]
            for c, words in enumerate(CLASS_WORDS)]


def class_prompts(templates: Sequence[str] = PROMPT_TEMPLATES) -> list[list[str]]:
    """Prompts per class for zero-shot classification: ``[class][k]`` = every held-out template ×
    every word of the class ("a photo of the sandal", "an image showing a flip-flop" …), built
    the same way for seen and unseen classes."""
    if isinstance(templates, str) or not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError("templates must be a non-empty list of str containing '{}'")
    return [[t.format(w) for t in templates for w in words] for words in CLASS_WORDS]


def names_in_texts(texts: Sequence[str], classes: Sequence[int]) -> list[tuple[str, str]]:
    """Every ``(text, word)`` where a word of one of ``classes`` (or its singular, e.g. "trouser"
    in "trousers") occurs in a text, case-insensitively as a substring — the leak test."""
    words = {w.lower() for c in classes for w in CLASS_WORDS[c]}
    words |= {w[:-1] for w in words if w.endswith("s")}
    return [(t, w) for t in texts for w in sorted(words) if w in t.lower()]


# --------------------------------------------------------------------------- the frozen text tower
def sentence_embeddings(texts: Sequence[str], *, encoder=None, cache: bool = True) -> "torch.Tensor":
    """all-MiniLM-L6-v2 embeddings of ``texts``: ``(N, 384)`` unit vectors (float32, CPU).

    The pretrained encoder is frozen: nothing here is trained.  The RAG chapter's
    :class:`~genai_lab.rag.embed.Embedder` computes them and keeps every vector in its on-disk
    cache (``cache=False``: no cache), so the encoder runs once per caption.  ``encoder`` (a
    ``SentenceTransformer``) defaults to :func:`genai_lab.models.load_minilm` ``("sentence")``.
    """
    import torch

    from .rag.embed import Embedder

    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts \
            or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of str")
    embedder = Embedder(encoder, cache_path=None if cache else False, batch_size=128, device="cpu")
    return torch.from_numpy(embedder.encode(list(texts)))


def grouped_embeddings(groups: Sequence[Sequence[str]], **kwargs) -> list["torch.Tensor"]:
    """:func:`sentence_embeddings` of lists of texts in one encoder call: ``[g]`` → ``(len(groups[g]), 384)``."""
    flat = [t for g in groups for t in g]
    emb = sentence_embeddings(flat, **kwargs)
    out, start = [], 0
    for g in groups:
        out.append(emb[start:start + len(g)])
        start += len(g)
    return out


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ZeroShotConfig:
    """Hyper-parameters of the zero-shot CLIP (the checkpoint key).

    Attributes:
        embed_dim: size of the shared space (384, the sentence size, unless ``project_text``).
        image_width: channels of the first image convolution.
        steps, batch_size, lr, weight_decay: training (AdamW, warm-up and cosine decay).
        init_temperature: CLIP's starting temperature (``logit_scale = log(1/τ)``).
        temperature_lr: learning rate of ``logit_scale`` alone (a scalar that must travel a long
            way in a short run; CLIP trains it with the other weights over 32 epochs).
        unseen: class ids held out of training.
        project_text: learn a linear projection of the frozen sentence embeddings to ``embed_dim``
            (``False``: the sentence space is the shared space, the text side fully frozen).
        seed: weights, caption choice and batch order.
    """

    embed_dim: int = MINILM_DIM
    image_width: int = 16
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    init_temperature: float = 0.07
    temperature_lr: float = 2e-2
    unseen: tuple[int, ...] = UNSEEN_CLASSES
    project_text: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "image_width", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "temperature_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.init_temperature <= 1:
            raise ValueError(f"init_temperature must be in (0, 1], got {self.init_temperature!r}")
        object.__setattr__(self, "unseen", _check_unseen(self.unseen))


def default_zero_shot_config(cfg, seed: int | None = None) -> ZeroShotConfig:
    """The chapter's zero-shot model for the profile (``seed`` defaults to ``cfg.seed``)."""
    return ZeroShotConfig(steps=cfg.pick(smoke=300, cpu=300, gpu=2000),
                          batch_size=cfg.pick(smoke=128, cpu=128, gpu=512),
                          seed=cfg.seed if seed is None else seed)


def _nn():
    import torch.nn as nn

    return nn


class FrozenTextCLIP(_nn().Module):
    """The chapter's image encoder + frozen sentence embeddings (optionally linearly projected) + a
    learned ``logit_scale``.

    ``encode_image(images (B,1,28,28))`` → unit vectors ``(B, D)``;
    ``encode_sentences(sentence_emb (N,384))`` → unit vectors ``(N, D)``.  The sentence encoder
    itself is not part of the module (its embeddings are computed once, outside).
    """

    def __init__(self, config: ZeroShotConfig, text_dim: int = MINILM_DIM):
        super().__init__()
        import torch

        if not isinstance(config, ZeroShotConfig):
            raise TypeError(f"config must be a ZeroShotConfig, got {type(config).__name__}")
        self.config = config
        self.image_encoder = ImageEncoder(config.embed_dim, config.image_width)
        if config.project_text:
            self.text_projection = _nn().Linear(text_dim, config.embed_dim, bias=False)
        else:  # the sentence space itself is the shared space: the text side is entirely frozen
            if config.embed_dim != text_dim:
                raise ValueError(f"embed_dim must equal the sentence size {text_dim} when project_text "
                                 f"is False, got {config.embed_dim}")
            self.text_projection = _nn().Identity()
        self.text_dim = text_dim
        self.logit_scale = _nn().Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def encode_image(self, images: "torch.Tensor") -> "torch.Tensor":
        return normalize(self.image_encoder(images))

    def encode_sentences(self, sentence_emb: "torch.Tensor") -> "torch.Tensor":
        if sentence_emb.ndim != 2 or sentence_emb.shape[1] != self.text_dim:
            raise ValueError(f"sentence_emb must be (N, {self.text_dim}), "
                             f"got shape {tuple(sentence_emb.shape)}")
        return normalize(self.text_projection(sentence_emb))

    def temperature(self) -> float:
        """The current temperature τ = 1 / exp(logit_scale), clipped as in training."""
        return float(1 / self.logit_scale.detach().clamp(max=math.log(100.0)).exp())


# --------------------------------------------------------------------------- using it
def class_embeddings(model: FrozenTextCLIP, prompt_emb: Sequence["torch.Tensor"]) -> "torch.Tensor":
    """One unit vector per class ``(C, D)``: the mean of the class's projected prompt embeddings
    (``prompt_emb[c]`` is ``(K_c, 384)``), renormalised — CLIP's prompt ensembling."""
    import torch

    if not prompt_emb or not all(isinstance(p, torch.Tensor) and p.ndim == 2 and len(p) for p in prompt_emb):
        raise ValueError("prompt_emb must be a non-empty list of (K, 384) tensors")
    device = model.logit_scale.device
    with torch.no_grad():
        return normalize(torch.stack([model.encode_sentences(p.to(device)).mean(0) for p in prompt_emb])).cpu()


def image_embeddings(model: FrozenTextCLIP, images: "torch.Tensor", batch_size: int = 1000) -> "torch.Tensor":
    """Images ``(N, 1, 28, 28)`` → unit vectors ``(N, D)`` on the CPU (eval mode, no gradients)."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError("images must be a non-empty (N, 1, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images))}")
    device, was_training = model.logit_scale.device, model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model.encode_image(images[s:s + batch_size].to(device)).cpu()
                         for s in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


def classify(image_emb: "torch.Tensor", class_emb: "torch.Tensor", among: Sequence[int] | None = None
             ) -> "torch.Tensor":
    """Class ids ``(N,)``: the most similar of ``class_emb (C, D)`` for each of ``image_emb (N, D)``,
    choosing only among the class ids ``among`` (default: all ``C``)."""
    import torch

    among = list(range(len(class_emb))) if among is None else list(among)
    if not among or not all(0 <= c < len(class_emb) for c in among):
        raise ValueError(f"among must list class ids in 0..{len(class_emb) - 1}, got {among!r}")
    idx = torch.tensor(among)
    return idx[(image_emb @ class_emb[idx].T).argmax(-1)]


def zero_shot_report(model: FrozenTextCLIP, images: "torch.Tensor", labels: "torch.Tensor",
                     prompt_emb: Sequence["torch.Tensor"]) -> dict[str, Any]:
    """Seen- and unseen-class zero-shot accuracy of ``model`` on ``images (N,1,28,28)``, ``labels (N,)``.

    Returns floats: ``unseen_accuracy`` (unseen images, choosing among the unseen classes; chance
    ``unseen_chance`` = 1/#unseen) with its binomial standard error ``unseen_se``,
    ``unseen_accuracy_all`` (the same images choosing among all ten classes, chance 0.1),
    ``seen_accuracy`` (seen images among the seen classes, chance ``seen_chance``) and
    ``seen_accuracy_all``; ``n_unseen``, ``n_seen``; ``unseen_predictions_all`` ``(n_unseen,)``.
    """
    import torch

    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    unseen = list(model.config.unseen)
    seen = [c for c in range(len(CLASS_WORDS)) if c not in unseen]
    img = image_embeddings(model, images)
    cls = class_embeddings(model, prompt_emb)
    labels = labels.cpu()
    is_unseen = torch.isin(labels, torch.tensor(unseen))
    if not is_unseen.any() or is_unseen.all():
        raise ValueError("labels must hold images of both seen and unseen classes")
    u_img, u_y, s_img, s_y = img[is_unseen], labels[is_unseen], img[~is_unseen], labels[~is_unseen]
    u_acc = float((classify(u_img, cls, unseen) == u_y).double().mean())
    u_all = classify(u_img, cls)
    return {"unseen_accuracy": u_acc, "unseen_chance": 1 / len(unseen),
            "unseen_se": math.sqrt(u_acc * (1 - u_acc) / len(u_y)),
            "unseen_accuracy_all": float((u_all == u_y).double().mean()),
            "seen_accuracy": float((classify(s_img, cls, seen) == s_y).double().mean()),
            "seen_chance": 1 / len(seen),
            "seen_accuracy_all": float((classify(s_img, cls) == s_y).double().mean()),
            "n_unseen": int(len(u_y)), "n_seen": int(len(s_y)), "unseen_predictions_all": u_all}


# --------------------------------------------------------------------------- training
def train_zero_shot_clip(model: FrozenTextCLIP, data, caption_emb: Sequence["torch.Tensor"],
                         prompt_emb: Sequence["torch.Tensor"], *, device=None, eval_every: int | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Train on the seen classes only: each seen training image of ``data`` (an ``ImageData``) is
    paired with a random caption embedding of its class (``caption_emb[c]``: ``(K_c, 384)``,
    empty for an unseen class), symmetric InfoNCE with the learned temperature.

    Returns ``{"steps", "losses", "temperature": [(step, τ)], "unseen_accuracy": [(step, acc)],
    "seen_accuracy": [(step, acc)], "before": report of the untrained model, "seconds"}``
    (accuracies on up to 1,000 test images; step ``-1`` is before training).
    """
    import torch

    from .train import infinite_batches, train_loop

    if not isinstance(model, FrozenTextCLIP):
        raise TypeError(f"model must be a FrozenTextCLIP, got {type(model).__name__}")
    c = model.config
    if len(caption_emb) != len(CLASS_WORDS):
        raise ValueError(f"caption_emb must hold one tensor per class ({len(CLASS_WORDS)}), got {len(caption_emb)}")
    for k, emb in enumerate(caption_emb):
        if (len(emb) > 0) == (k in c.unseen):
            raise ValueError(f"caption_emb[{k}] must be {'empty (unseen class)' if k in c.unseen else 'non-empty'}")
    device = torch.device(device or model.logit_scale.device)
    model.to(device)
    keep = ~torch.isin(data.train_y, torch.tensor(c.unseen))
    x, y = data.train_x[keep], data.train_y[keep]
    sizes = torch.tensor([len(e) for e in caption_emb])
    flat = torch.cat([e for e in caption_emb if len(e)]).to(device)
    offsets = torch.cumsum(sizes, 0) - sizes
    gen = torch.Generator().manual_seed(c.seed)

    def batches():
        for xb, yb in infinite_batches(x, y, batch_size=c.batch_size, generator=gen):
            pick = offsets[yb] + (torch.rand(len(yb), generator=gen) * sizes[yb]).long()
            yield xb.to(device), flat[pick]

    def loss_fn(m, batch):
        images, sentences = batch
        scale = m.logit_scale.clamp(max=math.log(100.0))
        return contrastive_loss(m.encode_image(images), m.encode_sentences(sentences), 1.0 / scale.exp())

    encoder_params = [p for n, p in model.named_parameters() if n != "logit_scale"]
    decay = [p for p in encoder_params if p.ndim >= 2]
    other = [p for p in encoder_params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": other, "weight_decay": 0.0},
                             {"params": [model.logit_scale], "weight_decay": 0.0, "lr": c.temperature_lr}],
                            lr=c.lr)
    warmup = max(1, c.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, c.steps) / c.steps)))
    probe = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(0))[:1000]
    probe_x, probe_y = data.test_x[probe], data.test_y[probe]

    def evaluate():
        r = zero_shot_report(model, probe_x, probe_y, prompt_emb)
        return {"unseen_accuracy": r["unseen_accuracy"], "seen_accuracy": r["seen_accuracy"],
                "temperature": model.temperature()}

    before = {k: v for k, v in zero_shot_report(model, probe_x, probe_y, prompt_emb).items()
              if k != "unseen_predictions_all"}
    hist = train_loop(model, opt, batches(), loss_fn, c.steps, scheduler=sched, clip_grad=1.0, eval_fn=evaluate,
                      eval_every=eval_every or max(1, c.steps // 10), progress=progress, desc="zero-shot CLIP")
    start = [(-1, before["unseen_accuracy"]), (-1, before["seen_accuracy"]), (-1, c.init_temperature)]
    return {"steps": hist.steps, "losses": [round(v, 4) for v in hist.losses],
            **{k: [start[i]] + [(s, round(v, 4)) for s, v in hist.evals[k]]
               for i, k in enumerate(("unseen_accuracy", "seen_accuracy", "temperature"))},
            "before": before, "seconds": round(hist.seconds, 2)}


def zero_shot_texts(config: ZeroShotConfig) -> tuple[list["torch.Tensor"], list["torch.Tensor"]]:
    """``(caption_emb, prompt_emb)``: frozen MiniLM embeddings of the seen classes' training captions
    (``[c]`` → ``(K_c, 384)``, empty for unseen classes) and of every class's prompts."""
    import torch

    captions = seen_caption_texts(config.unseen)
    prompts = class_prompts()
    emb = grouped_embeddings([*captions, *prompts])
    n = len(CLASS_WORDS)
    caption_emb = [e if len(e) else torch.zeros(0, MINILM_DIM) for e in emb[:n]]
    return caption_emb, emb[n:]


def trained_zero_shot_clip(cfg, config: ZeroShotConfig | None = None, *, verbose: bool = True
                           ) -> tuple[FrozenTextCLIP, dict]:
    """The zero-shot CLIP trained once per profile and config, cached: ``(model, meta)``."""
    from .checkpoints import load_or_train
    from .data import load_images

    config = config or default_zero_shot_config(cfg)
    if not isinstance(config, ZeroShotConfig):
        raise TypeError(f"config must be a ZeroShotConfig or None, got {type(config).__name__}")
    caption_emb, prompt_emb = zero_shot_texts(config)

    def build():
        import torch

        torch.manual_seed(config.seed)
        return FrozenTextCLIP(config)

    def train(model):
        return train_zero_shot_clip(model, load_images("fashion_mnist", cfg), caption_emb, prompt_emb,
                                    device=cfg.device, progress=verbose)

    key = {**asdict(config), "captions": seen_caption_texts(config.unseen), "text": "all-MiniLM-L6-v2",
           "version": 1}
    return load_or_train("clip-zero-shot-fashion", cfg, key, build, train, verbose=verbose)


def zero_shot_seeds(cfg, seeds: Sequence[int], *, verbose: bool = False) -> list[dict[str, Any]]:
    """:func:`zero_shot_report` on the full test set for one trained model per seed."""
    from .data import load_images

    data = load_images("fashion_mnist", cfg)
    reports = []
    for seed in seeds:
        config = default_zero_shot_config(cfg, seed=seed)
        model, _ = trained_zero_shot_clip(cfg, config, verbose=verbose)
        _, prompt_emb = zero_shot_texts(config)
        reports.append(zero_shot_report(model, data.test_x, data.test_y, prompt_emb))
    return reports


def bench_metrics(cfg) -> list:
    """The zero-shot half of the CLIP bench: unseen-class accuracy (mean over seeds), its chance,
    its standard error over seeds, and the seen-class accuracy."""
    from .bench import Metric

    reports = zero_shot_seeds(cfg, bench_seeds(cfg))
    unseen = [r["unseen_accuracy"] for r in reports]
    mean = sum(unseen) / len(unseen)
    se = (math.sqrt(sum((u - mean) ** 2 for u in unseen) / (len(unseen) - 1) / len(unseen))
          if len(unseen) > 1 else reports[0]["unseen_se"])
    return [Metric("clip_unseen_zero_shot_accuracy", mean, bar=cfg.pick(smoke=0.4, cpu=None, gpu=None)),
            Metric("clip_unseen_chance", reports[0]["unseen_chance"], higher_is_better=False),
            Metric("clip_unseen_zero_shot_se", se, higher_is_better=False),
            Metric("clip_unseen_zero_shot_accuracy_all_classes",
                   sum(r["unseen_accuracy_all"] for r in reports) / len(reports)),
            Metric("clip_seen_zero_shot_accuracy", sum(r["seen_accuracy"] for r in reports) / len(reports))]


def bench_seeds(cfg) -> list[int]:
    """The seeds whose models the page and the bench average (error bars over seeds)."""
    return [cfg.seed + k for k in range(cfg.pick(smoke=3, cpu=3, gpu=5))]
