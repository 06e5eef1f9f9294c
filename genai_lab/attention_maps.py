"""Reading a pretrained encoder's attention: all-MiniLM-L6-v2's maps and a search over its heads.

Part 1 of the attention chapter opens a real model (``genai_lab.models.load_minilm("encoder")``):

- :func:`encoder_attentions` runs it on a sentence and returns the tokens and the ``(1, H, T, T)``
  attention map of every layer; :func:`format_score_table` and :func:`plot_attention_grid` show them;
- :func:`pattern_targets`, :func:`head_pattern_scores`, :func:`average_pattern_scores` and
  :func:`best_heads` search every head for simple patterns (previous token, ``[CLS]``, a repeated
  word…) against a uniform baseline;
- :func:`bert_self_attention_weights` recomputes one layer's attention with
  :func:`genai_lab.attention.scaled_dot_product_attention`, to show it is the model's own.

Grammatical relations (determiner–noun, subject–verb) are scored in :mod:`genai_lab.syntax_heads`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .attention import _tensor, scaled_dot_product_attention, split_heads


def encoder_attentions(tokenizer, model, text: str) -> tuple[list[str], tuple[Tensor, ...]]:
    """Run a BERT-style encoder on ``text``; return its tokens and attention maps.

    Returns:
        ``(tokens, attentions)``: ``T`` token strings (with ``[CLS]``/``[SEP]``) and a tuple over
        layers of ``(1, H, T, T)`` tensors (row = query token, column = key token).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    enc = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    if not out.attentions:
        raise ValueError("model returned no attention maps; load it with attn_implementation='eager'")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    return tokens, tuple(a.detach().cpu() for a in out.attentions)


def format_score_table(weights: Tensor, tokens: Sequence[str], *, digits: int = 2) -> str:
    """A plain-text table of a ``(T, T)`` attention matrix: rows = queries, columns = keys."""
    _tensor(weights, "weights", 2)
    if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(f"weights must be (T, T), got shape {tuple(weights.shape)}")
    if len(tokens) != weights.shape[0]:
        raise ValueError(f"tokens must have {weights.shape[0]} entries, got {len(tokens)}")
    width = max(max(len(t) for t in tokens), digits + 3)
    head = " " * (width + 3) + " ".join(f"{t:>{width}}" for t in tokens)
    rows = [f"{q:>{width}} → " + " ".join(f"{float(v):>{width}.{digits}f}" for v in row)
            for q, row in zip(tokens, weights)]
    return "\n".join([head] + rows)


PATTERNS = ("previous token", "next token", "same token", "[CLS]", "[SEP]", "same word elsewhere")


def pattern_targets(tokens: Sequence[str]) -> dict[str, Tensor]:
    """For each pattern, a boolean ``(T, T)`` matrix marking where a query "should" look.

    - ``previous token`` / ``next token``: key ``i-1`` / ``i+1`` (real tokens only);
    - ``same token``: the diagonal;
    - ``[CLS]``, ``[SEP]``: the special token's column;
    - ``same word elsewhere``: other positions holding the same (lower-cased) word piece.

    Rows with no target (e.g. the first token for "previous token") are all ``False``.
    """
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise ValueError("tokens must be a non-empty sequence of str")
    t = len(tokens)
    special = torch.tensor([tok in ("[CLS]", "[SEP]", "[PAD]") for tok in tokens])
    real = ~special
    eye = torch.eye(t, dtype=torch.bool)
    prev = torch.zeros(t, t, dtype=torch.bool)
    prev[1:, :-1] = torch.eye(t - 1, dtype=torch.bool)
    prev &= real[:, None] & real[None, :]
    nxt = prev.T.clone()
    lower = [tok.lower() for tok in tokens]
    same_word = torch.tensor([[lower[i] == lower[j] and i != j for j in range(t)] for i in range(t)])
    same_word &= real[:, None] & real[None, :]

    def column(name: str) -> Tensor:  # every real query -> the key(s) holding token ``name``
        return torch.tensor([tok == name for tok in tokens])[None, :].expand(t, t) & real[:, None]

    return {"previous token": prev, "next token": nxt, "same token": eye & real[:, None],
            "[CLS]": column("[CLS]"), "[SEP]": column("[SEP]"), "same word elsewhere": same_word}


def head_pattern_scores(attentions: Sequence[Tensor], tokens: Sequence[str]) -> dict[str, Tensor]:
    """The statistic that finds pattern heads: mean attention mass a query puts on its targets.

    For each pattern of :func:`pattern_targets` and each (layer, head): sum the attention weights
    that fall on the target keys, averaged over the query rows that have a target.  1.0 = the head
    does nothing else; a head that spreads its attention uniformly scores (targets per row)/T.

    Args:
        attentions: tuple over layers of ``(1, H, T, T)`` (from :func:`encoder_attentions`).
        tokens: the ``T`` tokens.

    Returns:
        ``{pattern: (layers, heads) tensor}``, plus ``"uniform baseline"`` for each pattern under
        the key ``"<pattern> (uniform)"`` (a float tensor of the same shape).
    """
    if not attentions:
        raise ValueError("attentions must be a non-empty tuple of (1, H, T, T) tensors")
    att = torch.stack([a[0] for a in attentions]).float()  # (L, H, T, T)
    if att.shape[-1] != len(tokens):
        raise ValueError(f"tokens must have {att.shape[-1]} entries, got {len(tokens)}")
    scores = {}
    for name, target in pattern_targets(tokens).items():
        rows = target.any(dim=1)
        if not rows.any():
            continue
        mass = (att * target).sum(-1)[..., rows].mean(-1)  # (L, H)
        uniform = (target[rows].sum(-1).float() / len(tokens)).mean()
        scores[name] = mass
        scores[f"{name} (uniform)"] = torch.full_like(mass, float(uniform))
    return scores


def average_pattern_scores(tokenizer, model, texts: Sequence[str]) -> dict[str, Tensor]:
    """:func:`head_pattern_scores` averaged over several sentences (each pattern over the
    sentences where it occurs), so that one odd sentence does not decide which head is which."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of sentences")
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    for text in texts:
        tokens, attentions = encoder_attentions(tokenizer, model, text)
        for name, value in head_pattern_scores(attentions, tokens).items():
            sums[name] = sums.get(name, 0) + value
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sums}


def best_heads(scores: dict[str, Tensor]) -> list[dict]:
    """One row per pattern: the best (layer, head), its score, the uniform baseline, the ratio."""
    rows = []
    for name in PATTERNS:
        if name not in scores:
            continue
        mass = scores[name]
        flat = int(mass.argmax())
        layer, head = divmod(flat, mass.shape[1])
        base = float(scores[f"{name} (uniform)"].flatten()[0])
        rows.append({"pattern": name, "layer": layer, "head": head, "score": float(mass.max()),
                     "uniform": base, "ratio": float(mass.max()) / base})
    return rows


def bert_self_attention_weights(model, hidden_states: Tensor, layer: int,
                                attention_mask: Tensor | None = None) -> Tensor:
    """Recompute layer ``layer``'s attention of a transformers ``BertModel`` with this module's code.

    Feeds ``hidden_states`` (the layer's input, ``(B, T, D)`` from ``output_hidden_states=True``)
    through the layer's own query/key weights and :func:`scaled_dot_product_attention`; the result
    should equal the model's ``attentions[layer]`` ``(B, H, T, T)``.
    """
    _tensor(hidden_states, "hidden_states", 3)
    layers = model.encoder.layer
    if not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ValueError(f"layer must be an int in [0, {len(layers)}), got {layer!r}")
    self_attn = layers[layer].attention.self
    heads = model.config.num_attention_heads
    q = split_heads(self_attn.query(hidden_states), heads)
    k = split_heads(self_attn.key(hidden_states), heads)
    v = split_heads(self_attn.value(hidden_states), heads)
    mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    return scaled_dot_product_attention(q, k, v, mask)[1]


def plot_attention_grid(attentions: Sequence[Tensor], tokens: Sequence[str], *,
                        title: str = "Attention of every layer (rows) and head (columns)"):
    """One small heatmap per (layer, head); ``attentions``: tuple over layers of ``(1, H, T, T)``."""
    import matplotlib.pyplot as plt

    if not attentions:
        raise ValueError("attentions must be a non-empty tuple of (1, H, T, T) tensors")
    n_layers, n_heads = len(attentions), attentions[0].shape[1]
    if attentions[0].shape[-1] != len(tokens):
        raise ValueError(f"tokens must have {attentions[0].shape[-1]} entries, got {len(tokens)}")
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(1.1 * n_heads + 1.5, 1.1 * n_layers + 1.2),
                             squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            ax.imshow(attentions[layer][0, head].float().numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer}\nquery", fontsize=8)
            if layer == n_layers - 1:
                ax.set_xlabel("key", fontsize=8)
    fig.suptitle(title + f"\ntokens: {' '.join(tokens)}")
    fig.tight_layout()
    return fig


#: sentences used to search MiniLM's heads for patterns (some repeat a word on purpose).
MINILM_SENTENCES = [
    "This is a pen.",
    "The cat sat on the mat because the mat was warm.",
    "A dog chased another dog across the park.",
    "She said that she would come back tomorrow.",
    "Attention lets every word look at every other word in the sentence.",
    "The river bank was muddy, so the bank closed its riverside branch.",
]
