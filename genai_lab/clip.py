"""A small CLIP: an image encoder and a text encoder trained contrastively on Fashion-MNIST.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision") embeds images and texts into one space.  For a batch of ``B`` matching
(image, caption) pairs it computes the ``B × B`` cosine-similarity matrix, multiplies it by a
learned ``1 / temperature`` and applies cross-entropy twice — each image must pick its own
caption among the ``B`` captions, and each caption its own image (the symmetric InfoNCE loss,
Figure 3 of the paper).  Nothing is generated: CLIP only makes text and images *comparable*.

Comparable is enough for *zero-shot classification* (Figure 1 (2)–(3)): embed one prompt per
class ("a photo of a sneaker"), embed an image, pick the class whose prompt is most similar —
no classifier head is ever trained on labels.  The same embeddings give text→image retrieval,
and the text embedding can *condition a generator* (the last section: a GAN that draws what a
caption asks for, the role CLIP's text encoder plays inside Stable Diffusion).

Our data: Fashion-MNIST images paired with captions built from varied templates and synonyms
(:data:`CLASS_WORDS`, :data:`TRAIN_TEMPLATES`).  Zero-shot prompts use *other* templates
(:data:`PROMPT_TEMPLATES`) that never appear in training.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .bench import Metric
from .clip_hub import hub_clip_zero_shot, pretrained_clip_predict  # noqa: F401  (the real CLIP, gpu)

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Words a caption may use for each Fashion-MNIST class (same order as ``data.FASHION_CLASSES``).
CLASS_WORDS: tuple[tuple[str, ...], ...] = (
    ("t-shirt", "tee", "top"),
    ("trouser", "trousers", "pants", "jeans"),
    ("pullover", "sweater", "jumper"),
    ("dress", "gown", "frock"),
    ("coat", "jacket", "overcoat"),
    ("sandal", "sandals", "flip-flop"),
    ("shirt", "blouse", "button-up shirt"),
    ("sneaker", "trainer", "running shoe"),
    ("bag", "handbag", "purse"),
    ("ankle boot", "boot", "short boot"),
)

#: Caption templates seen in training (``{}`` = a class word).
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}", "a picture of a {}", "an image of a {}", "a {}", "{}",
    "a grey {}", "a small {}", "this is a {}", "a {} on a black background",
    "a low resolution photo of a {}", "a product photo of a {}", "my new {}",
)

#: Held-out prompt templates used for zero-shot classification and retrieval queries.
PROMPT_TEMPLATES: tuple[str, ...] = ("a photo of the {}", "an image showing a {}",
                                     "a grey photo of my {}")

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def class_prompt_words() -> list[str]:
    """The first caption word of each class (``"t-shirt"``, ``"trouser"``…), used in prompts."""
    return [words[0] for words in CLASS_WORDS]


# --------------------------------------------------------------------------- text side
class WordTokenizer:
    """Lower-cased words (hyphenated words kept whole) → ids, padded to ``max_len``.

    ``[PAD]`` = 0, ``[UNK]`` = 1, ``[EOS]`` = 2 (appended after the last word; the text encoder
    reads its output there, as CLIP does).
    """

    PAD, UNK, EOS = 0, 1, 2

    def __init__(self, words: Sequence[str], max_len: int = 12):
        if not isinstance(max_len, int) or max_len < 2:
            raise ValueError(f"max_len must be an int ≥ 2, got {max_len!r}")
        vocab = sorted({w for w in words if isinstance(w, str)} - {"[PAD]", "[UNK]", "[EOS]"})
        if not vocab:
            raise ValueError("words must contain at least one word")
        self.itos = ["[PAD]", "[UNK]", "[EOS]"] + vocab
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len

    @classmethod
    def from_texts(cls, texts: Sequence[str], max_len: int = 12) -> "WordTokenizer":
        return cls([w for t in texts for w in cls.split(t)], max_len=max_len)

    @staticmethod
    def split(text: str) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _WORD.findall(text.lower())

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, texts: Sequence[str] | str) -> "torch.Tensor":
        """``texts`` (a list of N strings) → int64 ids ``(N, max_len)``; long texts are cut."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ValueError("texts must be a non-empty list of str")
        ids = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.stoi.get(w, self.UNK) for w in self.split(text)][: self.max_len - 1]
            ids[row, : len(tokens) + 1] = torch.tensor(tokens + [self.EOS])
        return ids

    def decode(self, ids: "torch.Tensor") -> str:
        return " ".join(self.itos[i] for i in ids.tolist() if i not in (self.PAD, self.EOS))


def caption_texts() -> list[list[str]]:
    """Every training caption, grouped by class: ``[class][k]`` (templates × class words)."""
    return [[t.format(w) for t in TRAIN_TEMPLATES for w in words] for words in CLASS_WORDS]


def prompt_texts(templates: Sequence[str] = PROMPT_TEMPLATES) -> list[list[str]]:
    """Held-out zero-shot prompts: ``[class][template]`` with the class's first word."""
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError("templates must be a non-empty list of str containing '{}'")
    return [[t.format(w) for t in templates] for w in class_prompt_words()]


def default_tokenizer() -> WordTokenizer:
    """The tokenizer of the chapter's CLIP: every word of the training captions."""
    return WordTokenizer.from_texts([c for group in caption_texts() for c in group])


def sample_captions(labels: "torch.Tensor", generator=None) -> list[str]:
    """One random training caption per label: ``labels (B,)`` → ``B`` strings."""
    import torch

    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise ValueError("labels must be a 1-D tensor of class ids")
    groups = caption_texts()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(groups)):
        raise ValueError(f"labels must be class ids in 0..{len(groups) - 1}")
    picks = torch.randint(0, 1 << 30, (len(labels),), generator=generator)
    return [groups[c][int(p) % len(groups[c])] for c, p in zip(labels.tolist(), picks)]


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class CLIPConfig:
    """Hyper-parameters of the small CLIP (the checkpoint key).

    Attributes:
        embed_dim: size of the shared embedding space.
        image_width: channels of the first image convolution (then ×2, ×4).
        text_width, text_layers, text_heads: the text Transformer.
        steps, batch_size, lr, weight_decay: training.
        init_temperature: CLIP's initial temperature 0.07 (``logit_scale = log(1/0.07)``).
        temperature_lr: learning rate of ``logit_scale`` alone (``None``: ``lr``).  Adam moves a
            parameter by about its learning rate per step, so with ``lr`` a few hundred steps
            could shift ``log(1/τ)`` by a few tenths at most; CLIP had 32 epochs for it.
        seed: weights, caption choice, batch order.
    """

    embed_dim: int = 64
    image_width: int = 16
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    init_temperature: float = 0.07
    temperature_lr: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "image_width", "text_width", "text_layers", "text_heads",
                     "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width ({self.text_width}) must be divisible by text_heads "
                             f"({self.text_heads})")
        if not 0 < self.init_temperature <= 1:
            raise ValueError(f"init_temperature must be in (0, 1], got {self.init_temperature!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.temperature_lr is not None and not self.temperature_lr > 0:
            raise ValueError(f"temperature_lr must be > 0 or None, got {self.temperature_lr!r}")


def default_clip_config(cfg) -> CLIPConfig:
    """The chapter's CLIP size and training length for the profile."""
    return CLIPConfig(steps=cfg.pick(smoke=300, cpu=1500, gpu=6000),
                      image_width=cfg.pick(smoke=16, cpu=16, gpu=64),
                      batch_size=cfg.pick(smoke=128, cpu=256, gpu=512), temperature_lr=2e-2,
                      seed=cfg.seed)


def _nn():
    import torch.nn as nn

    return nn


class ImageEncoder(_nn().Module):
    """``images (B, 1, 28, 28)`` in ``[0, 1]`` → embeddings ``(B, embed_dim)`` (not normalised).

    Three 3×3 convolutions (width, 2·width, 4·width) with batch norm, max-pooling after the first
    two, global average pooling, a linear projection.
    """

    def __init__(self, embed_dim: int = 64, width: int = 16):
        super().__init__()
        nn = _nn()
        block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
        self.features = nn.Sequential(*block(1, width), nn.MaxPool2d(2), *block(width, 2 * width),
                                      nn.MaxPool2d(2), *block(2 * width, 4 * width),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.project = nn.Linear(4 * width, embed_dim, bias=False)

    def forward(self, images: "torch.Tensor") -> "torch.Tensor":
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B, 1, H, W), got shape {tuple(images.shape)}")
        return self.project(self.features(images - 0.5))


class TextEncoder(_nn().Module):
    """``token ids (B, T)`` → embeddings ``(B, embed_dim)`` (not normalised).

    Token + position embeddings, a pre-norm Transformer encoder (padding masked), the output at
    each text's ``[EOS]`` token, a linear projection — CLIP's text tower in miniature.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, width: int = 64, layers: int = 2,
                 heads: int = 4, max_len: int = 12):
        super().__init__()
        import torch

        nn = _nn()
        self.token = nn.Embedding(vocab_size, width, padding_idx=0)
        self.position = nn.Parameter(torch.randn(max_len, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, embed_dim, bias=False)

    def forward(self, ids: "torch.Tensor") -> "torch.Tensor":
        import torch

        if ids.ndim != 2 or ids.shape[1] > len(self.position):
            raise ValueError(f"ids must be (B, T ≤ {len(self.position)}), got shape {tuple(ids.shape)}")
        h = self.token(ids) + self.position[: ids.shape[1]]
        h = self.norm(self.transformer(h, src_key_padding_mask=ids == WordTokenizer.PAD))
        eos = (ids == WordTokenizer.EOS).int().argmax(dim=1)
        return self.project(h[torch.arange(len(ids), device=ids.device), eos])


class SmallCLIP(_nn().Module):
    """Image encoder + text encoder + learned ``logit_scale`` (= log(1 / temperature)).

    ``forward(images (B,1,28,28), ids (B,T))`` → ``(image_emb (B,D), text_emb (B,D))``, both
    L2-normalised.  ``model.tokenizer`` turns strings into ids (:meth:`encode_texts`).
    """

    def __init__(self, config: CLIPConfig, tokenizer: WordTokenizer | None = None):
        super().__init__()
        import torch

        if not isinstance(config, CLIPConfig):
            raise TypeError(f"config must be a CLIPConfig, got {type(config).__name__}")
        self.config = config
        self.tokenizer = tokenizer or default_tokenizer()
        self.image_encoder = ImageEncoder(config.embed_dim, config.image_width)
        self.text_encoder = TextEncoder(len(self.tokenizer), config.embed_dim, config.text_width,
                                        config.text_layers, config.text_heads, self.tokenizer.max_len)
        self.logit_scale = _nn().Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def encode_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """``(B, 1, 28, 28)`` → unit vectors ``(B, D)``."""
        return normalize(self.image_encoder(images))

    def encode_text(self, ids: "torch.Tensor") -> "torch.Tensor":
        """``(B, T)`` token ids → unit vectors ``(B, D)``."""
        return normalize(self.text_encoder(ids))

    def encode_texts(self, texts: Sequence[str]) -> "torch.Tensor":
        """Strings → unit vectors ``(N, D)`` (no gradients, on the model's device)."""
        import torch

        ids = self.tokenizer.encode(list(texts)).to(self.logit_scale.device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self.encode_text(ids)
        self.train(was_training)
        return out

    def forward(self, images, ids):
        return self.encode_image(images), self.encode_text(ids)


def normalize(x: "torch.Tensor") -> "torch.Tensor":
    """Rows scaled to unit length: ``(N, D)`` → ``(N, D)``."""
    import torch.nn.functional as F

    return F.normalize(x, dim=-1)


# --------------------------------------------------------------------------- the loss
def similarity_matrix(image_emb: "torch.Tensor", text_emb: "torch.Tensor") -> "torch.Tensor":
    """Cosine similarities ``(N_images, N_texts)``: entry ``[i, j]`` = cos(image i, text j)."""
    import torch

    for name, value in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(value, torch.Tensor) or value.ndim != 2:
            raise ValueError(f"{name} must be a 2-D tensor (N, D), got {getattr(value, 'shape', type(value))}")
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"image_emb and text_emb must share D, got {image_emb.shape[1]} and {text_emb.shape[1]}")
    return normalize(image_emb) @ normalize(text_emb).T


def contrastive_loss(image_emb: "torch.Tensor", text_emb: "torch.Tensor",
                     temperature: "float | torch.Tensor" = 0.07) -> "torch.Tensor":
    """CLIP's symmetric InfoNCE loss for ``B`` matching pairs (row ``i`` of each belongs together).

    ``logits = cos(image_i, text_j) / temperature`` ``(B, B)``; the loss is the mean of the
    cross-entropy over rows (image → its text) and over columns (text → its image).

    Args:
        image_emb, text_emb: ``(B, D)`` embeddings (normalised here).
        temperature: a positive float or 0-d tensor (CLIP learns ``log(1/temperature)``).
    """
    import torch
    import torch.nn.functional as F

    if isinstance(temperature, torch.Tensor):
        if temperature.ndim != 0 or not bool(temperature > 0):
            raise ValueError(f"temperature must be a positive scalar, got {temperature!r}")
    elif isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    logits = similarity_matrix(image_emb, text_emb) / temperature
    if logits.shape[0] != logits.shape[1]:
        raise ValueError(f"image_emb and text_emb must have the same batch size, got {tuple(logits.shape)}")
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def clip_loss(model: SmallCLIP, batch: tuple) -> "torch.Tensor":
    """``loss_fn`` for :func:`genai_lab.train.train_loop`: batch = ``(images, ids)``."""
    images, ids = batch
    image_emb, text_emb = model(images, ids)
    scale = model.logit_scale.clamp(max=math.log(100.0))  # CLIP clips the scale at 100
    return contrastive_loss(image_emb, text_emb, temperature=1.0 / scale.exp())


# --------------------------------------------------------------------------- training
def caption_batches(images: "torch.Tensor", labels: "torch.Tensor", tokenizer: WordTokenizer, *,
                    batch_size: int, generator=None, device=None):
    """Endless ``(images (B,1,28,28), ids (B,T))`` batches; each image gets a fresh random caption.

    Captions are pre-tokenised once (``[class][k]``), so a batch only draws indices.
    """
    import torch

    from .train import infinite_batches

    groups = caption_texts()
    bank = [tokenizer.encode(g) for g in groups]           # class -> (K_c, T)
    sizes = torch.tensor([len(b) for b in bank])
    flat = torch.cat(bank)                                   # (sum K_c, T)
    offsets = torch.cumsum(sizes, 0) - sizes
    for x, y in infinite_batches(images, labels, batch_size=batch_size, generator=generator):
        pick = (torch.rand(len(y), generator=generator) * sizes[y]).long()
        ids = flat[offsets[y] + pick]
        yield (x.to(device), ids.to(device)) if device is not None else (x, ids)


def train_clip(model: SmallCLIP, data, *, device=None, eval_every: int | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``data`` (an ``ImageData`` of Fashion-MNIST) with :func:`clip_loss`.

    Returns ``{"steps", "losses", "zero_shot": [(step, acc)], "temperature" (final τ),
    "temperature_trajectory": [(step, τ)], "seconds"}`` (the zero-shot accuracy is measured on up
    to 1,000 test images; step ``-1`` is the start).
    """
    import torch

    from .train import train_loop

    if not isinstance(model, SmallCLIP):
        raise TypeError(f"model must be a SmallCLIP, got {type(model).__name__}")
    c = model.config
    device = torch.device(device or model.logit_scale.device)
    model.to(device)
    gen = torch.Generator().manual_seed(c.seed)
    batches = caption_batches(data.train_x, data.train_y, model.tokenizer, batch_size=c.batch_size,
                              generator=gen, device=device)
    named = [(n, p) for n, p in model.named_parameters() if n != "logit_scale"]
    decay = [p for n, p in named if p.ndim >= 2 and "position" not in n]
    other = [p for n, p in named if not (p.ndim >= 2 and "position" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": other, "weight_decay": 0.0},
                             {"params": [model.logit_scale], "weight_decay": 0.0,
                              "lr": c.temperature_lr or c.lr}], lr=c.lr)
    warmup = max(1, c.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, c.steps) / c.steps)))
    probe_x, probe_y = data.test_x[:1000], data.test_y[:1000]

    def evaluate():
        return {"zero-shot accuracy": zero_shot_accuracy(model, probe_x, probe_y),
                "temperature": float(1 / model.logit_scale.detach().clamp(max=math.log(100.0)).exp())}

    hist = train_loop(model, opt, batches, clip_loss, c.steps, scheduler=sched, clip_grad=1.0,
                      eval_fn=evaluate, eval_every=eval_every or max(1, c.steps // 5),
                      progress=progress, desc="CLIP")
    return {"steps": hist.steps, "losses": [round(v, 4) for v in hist.losses],
            "zero_shot": hist.evals["zero-shot accuracy"],
            "temperature": round(float(1 / model.logit_scale.detach().exp()), 4),
            "temperature_trajectory": [(-1, c.init_temperature)]
                                      + [(s, round(v, 5)) for s, v in hist.evals["temperature"]],
            "seconds": round(hist.seconds, 2)}


def loss_by_temperature(model: SmallCLIP, images: "torch.Tensor", labels: "torch.Tensor",
                        temperatures: Sequence[float], *, batches: int = 4, seed: int = 0) -> list[float]:
    """The trained encoders' symmetric InfoNCE loss at each of ``temperatures``, averaged over
    ``batches`` training-like batches (``model.config.batch_size`` images, each with a random
    caption of its class): where the curve is lowest is where a learned temperature settles."""
    import torch

    if isinstance(temperatures, (int, float)) or not temperatures or not all(t > 0 for t in temperatures):
        raise ValueError("temperatures must be a non-empty list of positive numbers")
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive int, got {batches!r}")
    gen = torch.Generator().manual_seed(seed)
    stream = caption_batches(images, labels, model.tokenizer, batch_size=model.config.batch_size,
                             generator=gen, device=model.logit_scale.device)
    was_training = model.training
    model.eval()
    totals = [0.0] * len(temperatures)
    with torch.no_grad():
        for _ in range(batches):
            image_emb, text_emb = model(*next(stream))
            for k, t in enumerate(temperatures):
                totals[k] += float(contrastive_loss(image_emb, text_emb, float(t))) / batches
    model.train(was_training)
    return totals


def trained_clip(cfg, config: CLIPConfig | None = None, *, verbose: bool = True
                 ) -> tuple[SmallCLIP, dict]:
    """The chapter's small CLIP, trained once per profile and cached: ``(model, meta)``."""
    from .checkpoints import load_or_train
    from .data import load_images

    config = config or default_clip_config(cfg)
    if not isinstance(config, CLIPConfig):
        raise TypeError(f"config must be a CLIPConfig or None, got {type(config).__name__}")

    def build():
        import torch

        torch.manual_seed(config.seed)
        return SmallCLIP(config)

    def train(model):
        return train_clip(model, load_images("fashion_mnist", cfg), device=cfg.device)

    key = {**asdict(config), "vocab": len(default_tokenizer()), "templates": list(TRAIN_TEMPLATES),
           "version": 2}  # 2: the temperature's trajectory is recorded
    return load_or_train("clip-fashion", cfg, key, build, train, verbose=verbose)


# --------------------------------------------------------------------------- using it
def encode_images(model: SmallCLIP, images: "torch.Tensor", batch_size: int = 1000) -> "torch.Tensor":
    """Images ``(N, 1, 28, 28)`` in ``[0, 1]`` → unit vectors ``(N, D)`` on the CPU (no gradients)."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, 1, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images))}")
    device = model.logit_scale.device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model.encode_image(images[s:s + batch_size].to(device)).cpu()
                         for s in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


def class_text_embeddings(model: SmallCLIP, prompts: Sequence[Sequence[str]] | None = None
                          ) -> "torch.Tensor":
    """One unit vector per class ``(C, D)``: the mean of its prompts' embeddings (prompt
    ensembling, CLIP §3.1.4).  ``prompts[c]`` lists class ``c``'s prompts (default: held-out)."""
    prompts = prompts if prompts is not None else prompt_texts()
    if not prompts or not all(isinstance(p, (list, tuple)) and p for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty lists of str")
    return normalize(__import__("torch").stack([model.encode_texts(p).mean(0).cpu() for p in prompts]))


def zero_shot_predict(model: SmallCLIP, images: "torch.Tensor",
                      prompts: Sequence[Sequence[str]] | None = None) -> "torch.Tensor":
    """Class ids ``(N,)``: for each image the class whose prompt embedding is most similar."""
    return (encode_images(model, images) @ class_text_embeddings(model, prompts).T).argmax(-1)


def zero_shot_accuracy(model: SmallCLIP, images: "torch.Tensor", labels: "torch.Tensor",
                       prompts: Sequence[Sequence[str]] | None = None) -> float:
    """Share of ``images`` whose zero-shot prediction equals ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    return float((zero_shot_predict(model, images, prompts) == labels.cpu()).double().mean())


def retrieve(model: SmallCLIP, query: str, images: "torch.Tensor", k: int = 8
             ) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Text → image search: the ``k`` images most similar to ``query``: ``(indices (k,), scores (k,))``."""
    import torch

    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty str")
    if not isinstance(k, int) or k < 1 or k > len(images):
        raise ValueError(f"k must be an int in 1..{len(images)}, got {k!r}")
    scores = encode_images(model, images) @ model.encode_texts([query]).cpu()[0]
    top = torch.topk(scores, k)
    return top.indices, top.values


def retrieval_precision(model: SmallCLIP, images: "torch.Tensor", labels: "torch.Tensor",
                        k: int = 10, templates: Sequence[str] = PROMPT_TEMPLATES) -> float:
    """Mean precision@k of text→image retrieval: for every class word and held-out template,
    the share of the top-``k`` images that belong to that class (10 % = chance)."""
    import torch

    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    if not isinstance(k, int) or k < 1 or k > len(images):
        raise ValueError(f"k must be an int in 1..{len(images)}, got {k!r}")
    image_emb = encode_images(model, images)
    hits = []
    for c, words in enumerate(CLASS_WORDS):
        queries = [t.format(w) for t in templates for w in words]
        top = torch.topk(image_emb @ model.encode_texts(queries).cpu().T, k, dim=0).indices  # (k, Q)
        hits.append((labels[top] == c).double().mean())
    return float(torch.stack(hits).mean())


# --------------------------------------------------------------------------- text → image
def caption_embeddings(model: SmallCLIP) -> list["torch.Tensor"]:
    """The frozen text embedding of every training caption, per class: ``[c]`` → ``(K_c, D)``."""
    return [model.encode_texts(group).cpu() for group in caption_texts()]


def trained_text_gan(cfg, clip_model: SmallCLIP | None = None, *, verbose: bool = True):
    """A GAN that draws Fashion-MNIST items from a caption, conditioned on *our* CLIP's text
    embedding (cached): ``(TextConditionedGAN, meta)``; ``meta["metrics"]`` has the loss curves.

    The CLIP stays frozen; only the generator and the discriminator learn.
    """
    from .checkpoints import load_or_train
    from .data import load_images
    from .gan import TextConditionedGAN, to_gan_range, train_text_gan

    if clip_model is None:
        clip_model, _ = trained_clip(cfg, verbose=verbose)
    if not isinstance(clip_model, SmallCLIP):
        raise TypeError(f"clip_model must be a SmallCLIP, got {type(clip_model).__name__}")
    settings = {"steps": cfg.pick(smoke=800, cpu=5000, gpu=10000), "batch_size": 64, "lr": 2e-4,
                "seed": cfg.seed}
    arch = {"latent_dim": 32, "cond_dim": clip_model.config.embed_dim,
            "hidden": cfg.pick(smoke=256, cpu=256, gpu=512), "image_size": 28}
    key = {"arch": arch, **settings, "clip": asdict(clip_model.config), "version": 1}

    def build():
        import torch

        torch.manual_seed(cfg.seed)
        return TextConditionedGAN(**arch)

    def train(model):
        data = load_images("fashion_mnist", cfg)
        return train_text_gan(model, to_gan_range(data.train_x), data.train_y,
                              caption_embeddings(clip_model), device=cfg.device, **settings)

    return load_or_train("text-gan-fashion", cfg, key, build, train, verbose=verbose)


def generate_from_text(text_gan, clip_model: SmallCLIP, prompts: Sequence[str], per_prompt: int = 8,
                       *, seed: int = 0) -> "torch.Tensor":
    """Images for each prompt: ``(len(prompts) · per_prompt, 1, 28, 28)`` in ``[0, 1]``, prompt-major."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of str")
    if not isinstance(per_prompt, int) or per_prompt < 1:
        raise ValueError(f"per_prompt must be a positive int, got {per_prompt!r}")
    cond = clip_model.encode_texts(list(prompts)).cpu().repeat_interleave(per_prompt, dim=0)
    return text_gan.generate(cond, seed=seed)


def prompt_following(text_gan, clip_model: SmallCLIP, judge, per_prompt: int = 50, *,
                     templates: Sequence[str] = PROMPT_TEMPLATES, seed: int = 0) -> dict[str, Any]:
    """How often a classifier (``judge``, the CNN chapter's) sees the class a held-out prompt asked
    for: ``{"accuracy", "per_class": [10 floats], "chance": 0.1}``."""
    import torch

    prompts = [t.format(w) for w in class_prompt_words() for t in templates]
    wanted = torch.arange(len(CLASS_WORDS)).repeat_interleave(len(templates) * per_prompt)
    images = generate_from_text(text_gan, clip_model, prompts, per_prompt, seed=seed)
    device = next(judge.parameters()).device
    judge.eval()
    with torch.no_grad():
        got = torch.cat([judge(images[s:s + 1000].to(device)).argmax(-1).cpu()
                         for s in range(0, len(images), 1000)])
    hit = (got == wanted).double()
    per_class = [float(hit[wanted == c].mean()) for c in range(len(CLASS_WORDS))]
    return {"accuracy": float(hit.mean()), "per_class": per_class, "chance": 1 / len(CLASS_WORDS)}


# --------------------------------------------------------------------------- bench
def bench_metrics(cfg) -> list[Metric]:
    """CLIP half of the ``gan_clip`` bench (registered in :mod:`genai_lab.gan`)."""
    from .cnn import trained_classifier
    from .data import load_images

    model, _meta = trained_clip(cfg, verbose=False)
    data = load_images("fashion_mnist", cfg)
    acc = zero_shot_accuracy(model, data.test_x, data.test_y)
    judge, _ = trained_classifier(cfg, "fashion_mnist", verbose=False)
    text_gan, _ = trained_text_gan(cfg, model, verbose=False)
    metrics = [Metric("clip_zero_shot_accuracy", acc, bar=cfg.pick(smoke=0.70, cpu=None, gpu=None)),
               Metric("clip_text_to_image_precision_at_10",
                      retrieval_precision(model, data.test_x, data.test_y, k=10)),
               Metric("text_gan_prompt_following", prompt_following(text_gan, model, judge)["accuracy"])]
    if cfg.profile == "gpu":
        real = hub_clip_zero_shot(data.test_x, data.test_y, data.classes, device=cfg.device)
        if real is not None:
            metrics.append(Metric("hub_clip_zero_shot_accuracy", real))
    return metrics
