"""A tiny decoder-only GPT: the model, its training, its evaluation and a KV-cached generator.

The network is GPT-2's (pre-LayerNorm blocks, learned position embeddings, tied input/output
embeddings, GELU MLP) in a compact module that uses PyTorch's fused
``scaled_dot_product_attention``, so it trains fast on a CPU.  Its parameter names follow
transformers' ``GPT2LMHeadModel``, and :func:`to_hf_gpt2` copies the weights into one, which
proves the two compute the same function (tested to 1e-5).

>>> cfg = gl.setup()                                                # doctest: +SKIP
>>> model, meta = trained_tiny_gpt(cfg)                             # doctest: +SKIP
>>> meta["metrics"]["val_loss"]                                     # nats per character
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .bench import Metric, register
from .sampling import check_sampling_args, process_logits

# --------------------------------------------------------------------------- model


@dataclass
class GPTConfig:
    """Sizes of a :class:`TinyGPT`.

    Attributes:
        vocab_size: number of token ids (65 for Tiny Shakespeare characters).
        block_size: longest context (learned position embeddings exist for this many positions).
        n_layer: Transformer blocks.
        n_head: attention heads per block (must divide ``n_embd``).
        n_embd: width of the residual stream.
        dropout: dropout on attention weights, residual branches and embeddings while training.
    """

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class GPTOutput(NamedTuple):
    """``logits`` (B, T, V); ``loss`` (scalar, mean nats per token) or ``None``;
    ``past_key_values``: one ``(k, v)`` pair per layer, each (B, n_head, T_total, head_dim), or ``None``."""

    logits: torch.Tensor
    loss: torch.Tensor | None
    past_key_values: list | None


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions ≤ t (fused SDPA kernel)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, past: tuple | None = None):
        """``x`` (B, T, C), ``past`` cached ``(k, v)`` of earlier positions → ``(y (B, T, C), (k, v))``."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        drop = self.dropout if self.training else 0.0
        if past is None or T == 1:  # plain causal mask, or one new query that may see everything
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=past is None and T > 1)
        else:  # several new queries after a cache: the causal mask is aligned to the bottom right
            S = k.shape[2]
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    """Position-wise feed-forward network: C → 4C → GELU (tanh form, as GPT-2) → C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, past: tuple | None = None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class TinyGPT(nn.Module):
    """A decoder-only language model: token ids (B, T) → next-token logits (B, T, vocab_size).

    Parameter names match transformers' ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn`` …);
    the output layer ``lm_head`` shares its weight with the token embedding ``transformer.wte``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Number of distinct parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                past_key_values: list | None = None, use_cache: bool = False) -> GPTOutput:
        """Next-token logits for every position.

        Args:
            idx: int64 (B, T) token ids.
            targets: int64 (B, T) next tokens; when given, ``loss`` is the mean cross-entropy.
            past_key_values: the cache returned by an earlier call (positions continue after it).
            use_cache: return the updated cache in ``past_key_values``.
        """
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.ndim != 2:
            raise TypeError("idx must be an int64 tensor of shape (B, T)")
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        T = idx.shape[1]
        if past_len + T > self.config.block_size:
            raise ValueError(f"idx: {past_len + T} positions exceed block_size={self.config.block_size}")
        pos = torch.arange(past_len, past_len + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        presents = []
        for i, block in enumerate(self.transformer.h):
            x, present = block(x, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return GPTOutput(logits, loss, presents if use_cache else None)


def to_hf_gpt2(model: TinyGPT):
    """The same network as a transformers ``GPT2LMHeadModel`` (weights copied, eval mode).

    GPT-2 stores its linear layers as ``Conv1D`` with the weight transposed (in, out); everything
    else maps one to one.  Useful to run transformers' ``generate()`` and logits processors on
    the model trained here.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    c = model.config
    hf_config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                           n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu_new",
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                           bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    hf = GPT2LMHeadModel(hf_config)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith(".weight") and any(k in name for k in ("c_attn", "c_proj", "c_fc")):
            tensor = tensor.t()
        state[name] = tensor.detach().clone()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    return hf.to(next(model.parameters()).device).eval()


# --------------------------------------------------------------------------- generation


@torch.no_grad()
def generate(model: TinyGPT, idx: torch.Tensor, max_new_tokens: int, *, use_cache: bool = True,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, repetition_penalty: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to ``idx`` (B, T), one at a time.

    Each step turns the last position's logits into a choice: greedy (``do_sample=False``) or a
    sample after the filters of :func:`genai_lab.sampling.process_logits`.  With ``use_cache``
    the keys and values of earlier positions are kept, so each step feeds only the newest token;
    without it the whole sequence is fed again.  When the sequence outgrows ``block_size`` the
    context is cropped to its last ``block_size`` tokens; from then on every step re-runs that
    window (learned position embeddings end at ``block_size``, so the cache cannot grow further).

    Returns:
        int64 (B, T + max_new_tokens).
    """
    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.ndim != 2 or idx.shape[1] < 1:
        raise TypeError("idx must be an int64 tensor of shape (B, T) with T ≥ 1")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    # checked even for greedy decoding, which ignores them: a bad setting is a mistake either way
    check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    was_training = model.training
    model.eval()
    block = model.config.block_size
    past, fed = None, 0  # fed: how many tokens of idx the cache already holds
    for _ in range(max_new_tokens):
        if use_cache and past is not None and idx.shape[1] <= block:
            out = model(idx[:, fed:], past_key_values=past, use_cache=True)
        else:
            context = idx[:, -block:]
            out = model(context, use_cache=use_cache)
        past, fed = out.past_key_values, idx.shape[1]
        logits = out.logits[:, -1, :]
        if do_sample:
            scores = process_logits(logits, idx, temperature=temperature, top_k=top_k, top_p=top_p,
                                    repetition_penalty=repetition_penalty)
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        else:
            scores = process_logits(logits, idx, repetition_penalty=repetition_penalty)
            nxt = scores.argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
        if use_cache and idx.shape[1] > block:
            past = None  # positions ran out: rebuild the cache from the cropped context next step
    model.train(was_training)
    return idx


def generation_speed(model: TinyGPT, prompt: torch.Tensor, new_tokens: int, *,
                     use_cache: bool, repeats: int = 1) -> float:
    """Tokens per second of greedy :func:`generate` (best of ``repeats`` runs)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, prompt, new_tokens, use_cache=use_cache)
        best = min(best, time.perf_counter() - start)
    return new_tokens * prompt.shape[0] / best


def temperature_sweep(model: TinyGPT, prompt: torch.Tensor, temperatures: list[float], *,
                      n_samples: int = 8, length: int = 200, n: int = 4, seed: int = 0) -> list[dict]:
    """Diversity vs quality of sampled text at each temperature.

    For every temperature, draws ``n_samples`` continuations of ``length`` tokens after
    ``prompt`` (1, T) and reports ``distinct`` (share of distinct ``n``-grams over all samples:
    diversity) and ``log_likelihood`` (mean log-probability per token the model itself gives
    the sampled text at temperature 1: how typical, i.e. how "good" by the model's own standard).
    """
    from .sampling import distinct_n

    if not temperatures or any(not isinstance(t, (int, float)) or t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of positive numbers, got {temperatures!r}")
    if not isinstance(prompt, torch.Tensor) or prompt.ndim != 2 or prompt.shape[0] != 1:
        raise TypeError("prompt must be an int64 tensor of shape (1, T)")
    rows = []
    for t in temperatures:
        gen = torch.Generator(device=prompt.device).manual_seed(seed)
        out = generate(model, prompt.repeat(n_samples, 1), length, do_sample=True, temperature=float(t),
                       generator=gen)
        new = out[:, prompt.shape[1]:]
        nll = sum(evaluate_loss(model, row.contiguous()) for row in out) / n_samples
        rows.append({"temperature": float(t), "distinct": distinct_n(new.tolist(), n),
                     "log_likelihood": -nll})
    return rows


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_loss(model: TinyGPT, data: torch.Tensor, *, max_tokens: int | None = None,
                  stride: int | None = None, batch_size: int = 64) -> float:
    """Mean cross-entropy in nats per token of ``data`` (int64 (N,)), each token scored once.

    (The last fewer-than-``stride`` tokens, which would need a partial window, are not scored.)

    Windows of ``block_size`` tokens start every ``stride`` tokens (default: ``block_size``, i.e.
    side by side); each window scores only its last ``stride`` predictions (the first window
    scores all of them).  A smaller stride gives every prediction more context (at least
    ``block_size - stride`` tokens) and costs ``block_size / stride`` times more.
    ``max_tokens`` evaluates only the first that many tokens.
    """
    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    if not isinstance(data, torch.Tensor) or data.ndim != 1 or data.dtype != torch.long:
        raise TypeError("data must be a 1-D int64 tensor")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or max_tokens < 2:
            raise ValueError(f"max_tokens must be an int ≥ 2 or None, got {max_tokens!r}")
        data = data[:max_tokens]
    block = model.config.block_size
    if len(data) <= block:
        raise ValueError(f"data must be longer than block_size={block}, got {len(data)} tokens")
    stride = block if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= block:
        raise ValueError(f"stride must be an int in [1, block_size={block}], got {stride!r}")
    device = next(model.parameters()).device
    starts = list(range(0, len(data) - block, stride))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(starts), batch_size):
        chunk = starts[s:s + batch_size]
        idx = torch.stack([data[i:i + block] for i in chunk]).to(device)
        tgt = torch.stack([data[i + 1:i + block + 1] for i in chunk]).to(device)
        logits = model(idx).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")  # (B, T)
        scored = torch.ones_like(nll, dtype=torch.bool)
        scored[:, : block - stride] = False  # positions an earlier window already scored
        if chunk[0] == 0:
            scored[0] = True
        total += float(nll[scored].sum())
        count += int(scored.sum())
    model.train(was_training)
    return total / count


# --------------------------------------------------------------------------- judging text and context use


@torch.no_grad()
def mean_log_likelihood(model: TinyGPT, ids: torch.Tensor, start: int = 1, *, chunk: int = 2048) -> torch.Tensor:
    """The model's mean log-probability per token of ``ids[:, start:]`` given what precedes it: (B,).

    Each token is scored with the context :func:`generate` would have used for it: all earlier
    tokens, cropped to the last ``block_size``.  So a continuation scored here gets exactly the
    probabilities it was sampled from (at temperature 1, no filter).  ``ids``: int64 (B, T).
    """
    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
        raise TypeError("ids must be an int64 tensor of shape (B, T)")
    if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start < ids.shape[1]:
        raise ValueError(f"start must be an int in [1, T={ids.shape[1]}), got {start!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = ids.to(device)
    block, T = model.config.block_size, ids.shape[1]
    first = min(T - 1, block)  # targets 1..first: one pass over the first window
    logp = torch.log_softmax(model(ids[:, :first]).logits.float(), -1)
    scores = [logp.gather(-1, ids[:, 1:first + 1, None])[..., 0]]  # (B, first)
    if T - 1 > block:  # target p > block sees ids[:, p - block:p]: one window per target
        windows = ids[:, 1:T - 1].unfold(1, block, 1)  # (B, T - 1 - block, block)
        flat = windows.reshape(-1, block)
        last = torch.cat([model(flat[i:i + chunk]).logits[:, -1].float() for i in range(0, len(flat), chunk)])
        last = torch.log_softmax(last, -1).view(ids.shape[0], -1, last.shape[-1])
        scores.append(last.gather(-1, ids[:, block + 1:, None])[..., 0])
    model.train(was_training)
    return torch.cat(scores, dim=1)[:, start - 1:].mean(dim=1)


def compare_decoding(model: TinyGPT, data: torch.Tensor, decodings: dict, *, n_samples: int = 16,
                     prompt_len: int = 32, length: int = 160, seed: int = 0) -> list[dict]:
    """Judge decoding rules against real text: same prompts, same lengths, same measures.

    Cuts ``n_samples`` windows of ``prompt_len + length`` tokens, evenly spaced over ``data``
    (int64 (N,), held-out text); the first ``prompt_len`` tokens of each are the prompt.  The
    first row, ``"validation text"``, measures the real continuations; then one row per entry of
    ``decodings`` (a name → keyword arguments of :func:`generate`, e.g. ``{"do_sample": True,
    "top_k": 10}``; each sampler gets a generator seeded with ``seed``).  Every row holds ``name``,
    the :func:`genai_lab.sampling.text_diversity` measures of the continuations, ``log_likelihood``
    (the model's mean log-probability per token of the continuations given their prompts, in nats)
    and ``continuations`` (int64 (n_samples, length)).
    """
    from .sampling import text_diversity

    if not isinstance(decodings, dict) or not decodings or any(not isinstance(v, dict) for v in decodings.values()):
        raise TypeError("decodings must be a non-empty dict of name → dict of generate() keyword arguments")
    for name, value in (("n_samples", n_samples), ("prompt_len", prompt_len), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if prompt_len > model.config.block_size:
        raise ValueError(f"prompt_len must be ≤ block_size={model.config.block_size}, got {prompt_len}")
    if not isinstance(data, torch.Tensor) or data.ndim != 1 or data.dtype != torch.long:
        raise TypeError("data must be a 1-D int64 tensor")
    window = prompt_len + length
    if len(data) < window:
        raise ValueError(f"data must hold at least prompt_len + length = {window} tokens, got {len(data)}")
    device = next(model.parameters()).device
    starts = torch.linspace(0, len(data) - window, n_samples).long()
    real = torch.stack([data[s:s + window] for s in starts.tolist()]).to(device)  # (n_samples, window)
    prompts = real[:, :prompt_len]
    outputs = {"validation text": real}
    for name, kwargs in decodings.items():
        gen = torch.Generator(device=device).manual_seed(seed)
        outputs[name] = generate(model, prompts, length, generator=gen, **kwargs)
    rows = []
    for name, full in outputs.items():
        new = full[:, prompt_len:]
        rows.append({"name": name, **text_diversity(new.tolist()),
                     "log_likelihood": float(mean_log_likelihood(model, full, prompt_len).mean()),
                     "continuations": new.cpu()})
    return rows


@torch.no_grad()
def loss_by_position(model: TinyGPT, data: torch.Tensor, *, max_windows: int | None = None,
                     batch_size: int = 64) -> torch.Tensor:
    """Mean cross-entropy (nats/token) at each position of the context window: float (block_size,).

    ``data`` (int64 (N,)) is cut into side-by-side windows of ``block_size`` inputs (the windows
    of :func:`evaluate_loss`, so the mean of the result is its loss); entry ``t`` is the loss of
    predicting a window's token ``t + 1`` from the ``t + 1`` tokens before it.  A model that uses
    its context has a curve that falls with the position; one that ignores it, a flat one.
    ``max_windows`` keeps only the first that many windows.
    """
    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    if not isinstance(data, torch.Tensor) or data.ndim != 1 or data.dtype != torch.long:
        raise TypeError("data must be a 1-D int64 tensor")
    block = model.config.block_size
    if len(data) <= block:
        raise ValueError(f"data must be longer than block_size={block}, got {len(data)} tokens")
    if max_windows is not None and (isinstance(max_windows, bool) or not isinstance(max_windows, int)
                                    or max_windows < 1):
        raise ValueError(f"max_windows must be a positive int or None, got {max_windows!r}")
    starts = list(range(0, len(data) - block, block))[:max_windows]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros(block, dtype=torch.float64)
    for s in range(0, len(starts), batch_size):
        chunk = starts[s:s + batch_size]
        x = torch.stack([data[i:i + block] for i in chunk]).to(device)
        y = torch.stack([data[i + 1:i + block + 1] for i in chunk]).to(device)
        nll = F.cross_entropy(model(x).logits.float().transpose(1, 2), y, reduction="none")  # (B, T)
        total += nll.sum(dim=0).double().cpu()
    model.train(was_training)
    return (total / len(starts)).float()


#: published model sizes and training tokens the chapter compares with (``None``: not stated)
PUBLISHED_DATA_SCALE = {
    "GPT-2 (Radford et al., 2019)": {"parameters": 1.5e9, "tokens": None,
                                     "data": "WebText: 8M documents, 40 GB of text; token count not stated"},
    "GPT-3 (Brown et al., 2020)": {"parameters": 175e9, "tokens": 300e9, "data": "300B tokens"},
    "Chinchilla (Hoffmann et al., 2022)": {"parameters": 70e9, "tokens": 1.4e12, "data": "1.4T tokens"},
}
#: Hoffmann et al. (2022): compute-optimal training uses about 20 tokens per parameter
CHINCHILLA_TOKENS_PER_PARAMETER = 20


def training_data_scale(steps: int, batch_size: int, block_size: int, parameters: int,
                        train_tokens: int | None = None) -> dict:
    """How much text a run saw: tokens = steps × batch_size × block_size (every position is a target).

    Returns ``tokens``, ``parameters``, ``tokens_per_parameter``, and, when ``train_tokens`` (the
    size of the training split) is given, ``epochs`` (passes over it) and ``chinchilla_epochs``
    (passes needed for :data:`CHINCHILLA_TOKENS_PER_PARAMETER` tokens per parameter).
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("block_size", block_size),
                        ("parameters", parameters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    tokens = steps * batch_size * block_size
    out = {"tokens": tokens, "parameters": parameters, "tokens_per_parameter": tokens / parameters}
    if train_tokens is not None:
        if isinstance(train_tokens, bool) or not isinstance(train_tokens, int) or train_tokens < 1:
            raise ValueError(f"train_tokens must be a positive int or None, got {train_tokens!r}")
        out["epochs"] = tokens / train_tokens
        out["chinchilla_epochs"] = CHINCHILLA_TOKENS_PER_PARAMETER * parameters / train_tokens
    return out


# --------------------------------------------------------------------------- training


@dataclass
class TrainSettings:
    """How to train: optimiser steps, batch, peak learning rate, warm-up, wall-time budget."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    max_seconds: float | None = None
    eval_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")


def cosine_schedule(step: int, settings: TrainSettings) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_lr_ratio``."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    progress = min(1.0, (step - settings.warmup) / max(1, settings.steps - settings.warmup))
    return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1) -> torch.optim.Optimizer:
    """AdamW (β₂ = 0.99) with weight decay on matrices only, not on biases and LayerNorms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), foreach=True)


def train_gpt(model: TinyGPT, train_ids: torch.Tensor, settings: TrainSettings, *,
              val_ids: torch.Tensor | None = None, generator: torch.Generator | None = None,
              progress: bool = True, desc: str = "training GPT"):
    """Train ``model`` on random windows of ``train_ids`` (int64 (N,)); return a ``History``.

    If ``val_ids`` and ``settings.eval_every`` are given, ``val_loss`` (on the first 8k tokens
    of ``val_ids``) is recorded periodically.  Stops early after ``settings.max_seconds``.
    """
    from .text import random_windows
    from .train import train_loop

    if not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings, got {type(settings).__name__}")
    device = next(model.parameters()).device
    block = model.config.block_size
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield random_windows(train_ids, block, settings.batch_size, generator=gen, device=device)

    opt = make_optimizer(model, settings.lr, settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_schedule(s, settings))
    eval_fn = None
    if val_ids is not None and settings.eval_every:
        eval_fn = lambda: {"val_loss": evaluate_loss(model, val_ids, max_tokens=8192)}  # noqa: E731
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def loss_fn(m, batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            return m(batch[0], batch[1]).loss

    return train_loop(model, opt, batches(), loss_fn, settings.steps,
                      eval_fn=eval_fn, eval_every=settings.eval_every, scheduler=sched, clip_grad=1.0,
                      max_seconds=settings.max_seconds, progress=progress, desc=desc)


# --------------------------------------------------------------------------- the chapter's model


def tiny_gpt_recipe(cfg) -> tuple[GPTConfig, TrainSettings]:
    """The chapter's model and training budget for ``cfg.profile``.

    ``smoke``: 2 layers, 128 wide, context 64, 700 steps of 32 windows (~1.4M characters, about
    a minute on one CPU thread).  At a budget this small a shallower model beats the classic
    4-layer one (measured: 1.78 vs 1.95 nats/char after ~80 s on one Xeon thread).
    ``cpu``: 4 layers, 128 wide, context 128, 2300 steps of 32 windows (~9.4M characters),
    stopped after 570 s whatever happens.  Chosen from a sweep at an equal budget of ~8 minutes
    on 2 cores (validation nats/char): 4×128 for 2300 steps 1.541, 4×160 for 1700 steps 1.547,
    4×192 for 1300 steps 1.584 — at this budget more steps beat a wider model.
    ``gpu``: 6 layers, 384 wide, context 256, dropout 0.2, 2000 steps of 64 windows (bf16
    autocast), validation measured every 250 steps (``val_curve``).  Measured on an H100
    (validation nats/char): 1500 steps 1.469, 2000 steps 1.465, 2500 steps 1.478 and 4000 steps
    1.62 — Tiny Shakespeare is small, and a 10.8M-parameter model starts to memorise it after
    ~2000 steps (its training loss keeps falling).  Dropout 0.3 for 2500 steps reached 1.457.
    """
    model_config = cfg.pick(
        smoke=GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
        cpu=GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
        gpu=GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
    )
    settings = cfg.pick(
        smoke=TrainSettings(steps=700, batch_size=32, lr=6e-3, warmup=40),
        cpu=TrainSettings(steps=2300, batch_size=32, lr=3e-3, warmup=60, max_seconds=570),
        gpu=TrainSettings(steps=2000, batch_size=64, lr=1e-3, warmup=100, max_seconds=480, eval_every=250),
    )
    return model_config, settings


def trained_tiny_gpt(cfg):
    """The chapter's character-level GPT on Tiny Shakespeare: ``(model, meta)``, trained once.

    Cached through :func:`genai_lab.checkpoints.load_or_train` (keyed by profile and recipe), so
    the notebook, the bench and the LoRA chapter share one training run.  ``meta["metrics"]``
    holds ``val_loss`` (nats/char on the whole validation split), ``train_seconds``,
    ``tokens_per_second``, ``steps`` and the loss curve (``loss_steps``, ``losses``).
    """
    from .checkpoints import load_or_train
    from .text import shakespeare_chars

    corpus = shakespeare_chars()
    model_config, settings = tiny_gpt_recipe(cfg)
    model_config.vocab_size = corpus.tokenizer.vocab_size

    def build():
        torch.manual_seed(cfg.seed)
        return TinyGPT(model_config)

    def train(model):
        gen = torch.Generator().manual_seed(cfg.seed)
        cpu_start = time.process_time()
        hist = train_gpt(model, corpus.train, settings, val_ids=corpus.val, generator=gen)
        cpu_seconds = time.process_time() - cpu_start
        steps = len(hist.losses)
        every = max(1, steps // 200)
        return {"val_loss": evaluate_loss(model, corpus.val), "train_seconds": round(hist.seconds, 2),
                "train_cpu_seconds": round(cpu_seconds, 2),
                "tokens_per_second": steps * settings.batch_size * model_config.block_size / hist.seconds,
                "steps": steps, "parameters": model.num_parameters(),
                "loss_steps": hist.steps[::every], "losses": [round(x, 4) for x in hist.losses[::every]],
                "val_curve": hist.evals.get("val_loss", [])}

    key = {"model": asdict(model_config), "train": asdict(settings), "seed": cfg.seed, "version": 2}
    # quiet on a cache hit: the notebooks print the model and its loss, and stderr is an output problem
    return load_or_train("tiny-gpt-shakespeare", cfg, key, build, train, verbose=False)


# --------------------------------------------------------------------------- scaling


def scaling_experiment(cfg, widths: list[int], *, n_layer: int = 2, block_size: int = 64,
                       steps: int = 200, batch_size: int = 32, lr: float = 3e-3,
                       eval_tokens: int = 20000, progress: bool = True) -> list[dict]:
    """Validation loss vs parameter count at a fixed budget of training tokens.

    Trains one model per width (same depth, steps, batch and context, so every model sees the
    same ``steps × batch_size × block_size`` characters) and returns rows with ``width``,
    ``parameters``, ``val_loss`` (on the first ``eval_tokens`` validation characters),
    ``seconds``.
    """
    from .text import shakespeare_chars

    if not widths or any(not isinstance(w, int) or w < 4 or w % 4 for w in widths):
        raise ValueError(f"widths must be a non-empty list of ints divisible by 4, got {widths!r}")
    corpus = shakespeare_chars()
    rows = []
    for width in widths:
        torch.manual_seed(cfg.seed)
        model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=block_size,
                                  n_layer=n_layer, n_head=4, n_embd=width)).to(cfg.device)
        settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, warmup=max(1, steps // 20))
        hist = train_gpt(model, corpus.train, settings, generator=torch.Generator().manual_seed(cfg.seed),
                         progress=progress, desc=f"width {width}")
        rows.append({"width": width, "parameters": model.num_parameters(),
                     "val_loss": evaluate_loss(model, corpus.val, max_tokens=eval_tokens),
                     "seconds": round(hist.seconds, 2)})
    return rows


# --------------------------------------------------------------------------- bench


@register("gpt", "tiny character GPT on Tiny Shakespeare: validation nats/char, speed, KV cache")
def bench_gpt(cfg) -> list[Metric]:
    """Train (or load) the chapter's tiny GPT; report validation loss, training time and speeds."""
    model, meta = trained_tiny_gpt(cfg)
    m = meta["metrics"]
    prompt = torch.zeros(1, 1, dtype=torch.long, device=cfg.device)
    n_new = model.config.block_size - 1
    fast = generation_speed(model, prompt, n_new, use_cache=True, repeats=3)
    slow = generation_speed(model, prompt, n_new, use_cache=False, repeats=3)
    metrics = [
        Metric("gpt_val_nats_per_char", m["val_loss"], higher_is_better=False,
               bar=cfg.pick(smoke=2.00, cpu=1.55, gpu=1.47), unit="nats/char"),
        Metric("gpt_val_perplexity", math.exp(m["val_loss"]), higher_is_better=False),
        Metric("gpt_train_seconds", m["train_seconds"], higher_is_better=False,
               bar=cfg.pick(smoke=90, cpu=600, gpu=None), unit="s"),
        Metric("gpt_train_cpu_seconds", m.get("train_cpu_seconds", math.nan), higher_is_better=False, unit="s"),
        Metric("gpt_train_tokens_per_second", m["tokens_per_second"], unit="tok/s"),
        Metric("gpt_generate_tokens_per_second_kv_cache", fast, unit="tok/s"),
        Metric("gpt_generate_tokens_per_second_no_cache", slow, unit="tok/s"),
    ]
    try:
        from .ngram import baseline_table
    except ImportError:  # the n-gram chapter's module is optional here
        return metrics
    five = baseline_table(cfg, orders=(5,))[5]
    metrics.append(Metric("ngram5_val_nats_per_char", five, higher_is_better=False, unit="nats/char"))
    return metrics
