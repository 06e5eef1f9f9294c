"""Recurrent networks: an LSTM cell by hand, long-range memory, a char-level LSTM language model,
and why recurrence is slow (ELMo-style contextual vectors: :mod:`genai_lab.elmo`).

An RNN reads a sequence one step at a time; the state it carries is the only memory of the past::

    h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)                     (Elman RNN)

An LSTM (Hochreiter & Schmidhuber 1997) adds a cell state ``c`` that is changed only by gated,
mostly additive updates, so information (and gradient) can survive many steps::

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   # 4 · hidden rows
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(c_t)

The gate order ``i, f, g, o`` and the weight shapes are those of ``torch.nn.LSTMCell``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from .bench import Metric, register
# ELMo-style contextual vectors live in genai_lab.elmo (beside the controlled sense probe) and stay
# importable from here.
from .elmo import (contextual_char_states, contextual_word_vector, cosine_matrix,  # noqa: F401
                   sense_probe, static_word_vector)

import torch
from torch import nn


def _check_tensor(name: str, value, ndim: int | None = None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(value.shape)}")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


# ====================================================================== the LSTM cell
def lstm_cell(x, h, c, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step, written out (the same maths and layout as ``torch.nn.LSTMCell``).

    Args:
        x: input ``(B, I)``.
        h, c: previous hidden and cell state, each ``(B, H)``.
        weight_ih: ``(4H, I)``; weight_hh: ``(4H, H)``; bias_ih, bias_hh: ``(4H,)`` or ``None``.
            Rows are the gates in the order input ``i``, forget ``f``, candidate ``g``, output ``o``.
    Returns:
        ``(h_next, c_next)``, each ``(B, H)``.
    """
    for name, value in (("x", x), ("h", h), ("c", c)):
        _check_tensor(name, value, 2)
    _check_tensor("weight_ih", weight_ih, 2)
    _check_tensor("weight_hh", weight_hh, 2)
    hidden = h.shape[1]
    if weight_ih.shape != (4 * hidden, x.shape[1]):
        raise ValueError(f"weight_ih must have shape {(4 * hidden, x.shape[1])}, got {tuple(weight_ih.shape)}")
    if weight_hh.shape != (4 * hidden, hidden):
        raise ValueError(f"weight_hh must have shape {(4 * hidden, hidden)}, got {tuple(weight_hh.shape)}")
    if c.shape != h.shape:
        raise ValueError(f"c must have the shape of h {tuple(h.shape)}, got {tuple(c.shape)}")
    gates = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        gates = gates + bias_ih
    if bias_hh is not None:
        gates = gates + bias_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


class ScratchLSTMCell(nn.Module):
    """An LSTM cell with ``torch.nn.LSTMCell``'s parameters, computed by :func:`lstm_cell`.

    ``load_state_dict`` accepts an ``nn.LSTMCell``'s state dict unchanged.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        ref = nn.LSTMCell(input_size, hidden_size, bias=bias)  # borrow PyTorch's initialisation
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih, self.weight_hh = ref.weight_ih, ref.weight_hh
        self.bias_ih = ref.bias_ih if bias else None
        self.bias_hh = ref.bias_hh if bias else None

    def forward(self, x, state=None):
        """``x (B, I)``, ``state = (h, c)`` each ``(B, H)`` or ``None`` (zeros) → ``(h, c)``."""
        _check_tensor("x", x, 2)
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        return lstm_cell(x, state[0], state[1], self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


# ====================================================================== long-range memory task
def memory_task_batch(batch_size: int, distance: int, *, n_symbols: int = 8, generator=None):
    """Sequences that test memory over ``distance`` steps.

    Step 0 shows a *cue* symbol (one of ``n_symbols``); then come ``distance`` random distractor
    symbols drawn from the *same* set (so the model must remember the first one, not just any
    symbol it saw); the last step is a *query* token.  The answer is the cue.

    Token ids: symbols ``0..n_symbols-1``, query ``n_symbols`` (``vocab = n_symbols + 1``).

    Returns:
        ``(x, y)``: int64 ``(B, distance + 2)`` tokens and int64 ``(B,)`` cues.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("distance", distance)
    _check_positive_int("n_symbols", n_symbols)
    cue = torch.randint(n_symbols, (batch_size,), generator=generator)
    noise = torch.randint(n_symbols, (batch_size, distance), generator=generator)
    query = torch.full((batch_size, 1), n_symbols)
    return torch.cat([cue[:, None], noise, query], dim=1), cue


class SequenceClassifier(nn.Module):
    """Embedding → one recurrent layer (``"rnn"``: tanh Elman RNN, or ``"lstm"``) → linear head on
    the last step.  ``forward(x (B, T)) -> logits (B, n_classes)``.

    ``forget_bias`` (LSTM only) starts the forget gate at ``σ(forget_bias)``: a positive value
    means "keep the cell state unless told otherwise" (Gers et al. 2000; Jozefowicz et al. 2015).
    """

    def __init__(self, kind: str, vocab_size: int, n_classes: int, hidden: int = 32, embed: int = 16,
                 forget_bias: float = 0.0):
        super().__init__()
        if kind not in ("rnn", "lstm"):
            raise ValueError(f"kind must be 'rnn' or 'lstm', got {kind!r}")
        for name, v in (("vocab_size", vocab_size), ("n_classes", n_classes), ("hidden", hidden), ("embed", embed)):
            _check_positive_int(name, v)
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, embed)
        rnn_cls = nn.LSTM if kind == "lstm" else nn.RNN
        self.rnn = rnn_cls(embed, hidden, batch_first=True)
        if kind == "lstm" and forget_bias:
            with torch.no_grad():  # gate rows are i, f, g, o: the second quarter is the forget gate
                self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(float(forget_bias))
                self.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
        self.head = nn.Linear(hidden, n_classes)

    def forward_embedded(self, emb):
        """``emb (B, T, E)`` → logits ``(B, n_classes)`` (lets us take gradients w.r.t. inputs)."""
        out, _ = self.rnn(emb)
        return self.head(out[:, -1])

    def forward(self, x):
        _check_tensor("x", x, 2)
        return self.forward_embedded(self.embed(x))


@dataclass
class MemoryConfig:
    """Sizes of the memory experiment (every field changes the trained weights).

    One model of each kind is trained per distance, from scratch (no curriculum), so a model
    only succeeds if gradient from the answer reaches the cue ``distance`` steps back.
    """

    distances: tuple[int, ...] = (2, 5, 10, 20, 40)
    n_symbols: int = 8
    hidden: int = 32
    forget_bias: float = 3.0
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


def memory_config(cfg) -> MemoryConfig:
    """The profile's memory experiment: smoke is small, cpu/gpu train longer on longer gaps."""
    return cfg.pick(smoke=MemoryConfig(),
                    cpu=MemoryConfig(distances=(2, 5, 10, 20, 40, 80), hidden=64, steps=600),
                    gpu=MemoryConfig(distances=(2, 5, 10, 20, 40, 80, 160), hidden=128, steps=1500))


def build_memory_model(kind: str, mc: MemoryConfig):
    """A fresh, seeded :class:`SequenceClassifier` for the memory task."""
    if not isinstance(mc, MemoryConfig):
        raise TypeError(f"mc must be a MemoryConfig, got {type(mc).__name__}")
    torch.manual_seed(mc.seed)
    return SequenceClassifier(kind, mc.n_symbols + 1, mc.n_symbols, hidden=mc.hidden,
                              forget_bias=mc.forget_bias if kind == "lstm" else 0.0)


def train_memory_model(model, distance: int, mc: MemoryConfig, *, progress: bool = True):
    """Train ``model`` (from :func:`build_memory_model`) on sequences with a fixed ``distance``.

    Returns the :class:`~genai_lab.train.History`.
    """
    from .train import train_loop

    _check_positive_int("distance", distance)
    if not isinstance(mc, MemoryConfig):
        raise TypeError(f"mc must be a MemoryConfig, got {type(mc).__name__}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(mc.seed + distance)

    def batches():
        while True:
            x, y = memory_task_batch(mc.batch_size, distance, n_symbols=mc.n_symbols, generator=gen)
            yield x.to(device), y.to(device)

    opt = torch.optim.Adam(model.parameters(), lr=mc.lr)
    return train_loop(model, opt, batches(), lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                      mc.steps, clip_grad=1.0, progress=progress, desc=f"{model.kind} d={distance}")


def memory_accuracy(model, distance: int, *, n_symbols: int = 8, n_eval: int = 512,
                    seed: int = 123) -> float:
    """Share of fresh seeded sequences whose cue ``distance`` steps back is recalled (chance 1/n_symbols)."""
    _check_positive_int("distance", distance)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x, y = memory_task_batch(n_eval, distance, n_symbols=n_symbols, generator=gen)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(x.to(device)).argmax(-1).cpu() == y).float().mean().item()
    model.train(was_training)
    return acc


def gradient_norms_by_step(model, x, y):
    """‖∂loss/∂input_t‖ for every step ``t``: how much gradient reaches early time steps.

    Args:
        model: a :class:`SequenceClassifier`.
        x: int64 ``(B, T)``; y: int64 ``(B,)``.
    Returns:
        float tensor ``(T,)``: the gradient norm w.r.t. each step's input embedding, averaged
        over the batch (index 0 is the cue, ``T-1`` the query).
    """
    _check_tensor("x", x, 2)
    _check_tensor("y", y, 1)
    device = next(model.parameters()).device
    emb = model.embed(x.to(device)).detach().requires_grad_(True)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model.forward_embedded(emb), y.to(device))
        (grad,) = torch.autograd.grad(loss, emb)
    model.train(was_training)
    return grad.norm(dim=-1).mean(0).cpu()


def run_memory_experiment(cfg, *, progress: bool = True) -> dict:
    """Train an RNN and an LSTM per distance on the memory task (cached) and measure them.

    Returns a dict with ``config`` (:class:`MemoryConfig`), ``accuracy[kind][distance]``,
    ``grad_norms[kind]["untrained"|"trained"]`` (``(T,)`` tensors at the longest distance),
    ``losses[kind][distance]`` and ``seconds[kind]`` (training time, summed over distances).
    """
    from .checkpoints import load_or_train

    mc = memory_config(cfg)
    out = {"config": mc, "accuracy": {}, "grad_norms": {}, "losses": {}, "seconds": {}}
    longest = max(mc.distances)
    x, y = memory_task_batch(256, longest, n_symbols=mc.n_symbols, generator=torch.Generator().manual_seed(7))
    for kind in ("rnn", "lstm"):
        out["accuracy"][kind], out["losses"][kind], out["seconds"][kind] = {}, {}, 0.0
        untrained = gradient_norms_by_step(build_memory_model(kind, mc), x, y)
        for d in mc.distances:
            def train(model, d=d):
                hist = train_memory_model(model, d, mc, progress=progress)
                return {"losses": hist.losses, "seconds": hist.seconds}

            model, meta = load_or_train(f"rnn-memory-{kind}-d{d}", cfg, {"kind": kind, "distance": d, **asdict(mc)},
                                        lambda kind=kind: build_memory_model(kind, mc), train, verbose=False)
            out["accuracy"][kind][d] = memory_accuracy(model, d, n_symbols=mc.n_symbols)
            out["losses"][kind][d] = meta["metrics"]["losses"]
            out["seconds"][kind] += meta["metrics"]["seconds"]
        out["grad_norms"][kind] = {"untrained": untrained, "trained": gradient_norms_by_step(model, x, y)}
    return out


# ====================================================================== char-level LSTM LM
class CharLSTM(nn.Module):
    """A character language model: embedding → ``layers``-layer LSTM → linear over the vocabulary.

    ``forward(idx (B, T), state=None) -> (logits (B, T, V), state)``; ``state`` is the LSTM's
    ``(h, c)``, each ``(layers, B, hidden)``, so long texts can be read chunk by chunk.
    """

    def __init__(self, vocab_size: int, hidden: int = 256, layers: int = 1, embed: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers), ("embed", embed)):
            _check_positive_int(name, v)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx, state=None):
        _check_tensor("idx", idx, 2)
        out, state = self.lstm(self.embed(idx), state)
        return self.head(self.drop(out)), state

    @torch.no_grad()
    def generate(self, prefix, n_new: int, *, temperature: float = 1.0, generator=None):
        """Sample ``n_new`` ids after ``prefix`` (int64 ``(T0,)``, T0 ≥ 1) → int64 ``(T0 + n_new,)``."""
        from .ngram import apply_temperature

        _check_tensor("prefix", prefix, 1)
        _check_positive_int("n_new", n_new)
        if len(prefix) == 0:
            raise ValueError("prefix must hold at least one id")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        logits, state = self(prefix.to(device)[None])
        out = [int(t) for t in prefix]
        for _ in range(n_new):
            probs = apply_temperature(torch.softmax(logits[0, -1].double().cpu(), -1), temperature)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
            out.append(nxt)
            logits, state = self(torch.tensor([[nxt]], device=device), state)
        self.train(was_training)
        return torch.tensor(out, dtype=torch.long)


@torch.no_grad()
def stream_cross_entropy(model, data, *, streams: int = 16, chunk: int = 256,
                         max_tokens: int | None = None) -> float:
    """Validation nats/token of a :class:`CharLSTM` reading ``data`` left to right with its state.

    ``data`` (int64 ``(N,)``) is cut into ``streams`` contiguous pieces read in parallel, chunk by
    chunk, carrying the LSTM state (so, like the n-gram, each prediction uses only the past).
    ``max_tokens`` evaluates on the first that many tokens only (for quick curves).
    """
    _check_tensor("data", data, 1)
    _check_positive_int("streams", streams)
    _check_positive_int("chunk", chunk)
    if max_tokens is not None:
        _check_positive_int("max_tokens", max_tokens)
        data = data[:max_tokens]
    per = (len(data) - 1) // streams
    if per < 1:
        raise ValueError(f"data must hold more than streams={streams} tokens, got {len(data)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x_all = data[:streams * per].view(streams, per)  # stream s reads data[s·per : (s+1)·per]
    y_all = data[1:streams * per + 1].view(streams, per)  # ... and predicts the next character
    state, total, count = None, 0.0, 0
    for start in range(0, per, chunk):
        x = x_all[:, start:start + chunk].to(device)
        y = y_all[:, start:start + chunk].to(device)
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                             reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


@dataclass
class CharLMConfig:
    """Everything that changes the char-LSTM's weights (the checkpoint key)."""

    hidden: int = 256
    layers: int = 1
    embed: int = 64
    dropout: float = 0.0
    block_size: int = 64
    batch_size: int = 32
    steps: int = 400
    lr: float = 4e-3
    max_seconds: float | None = None
    eval_every: int = 50
    eval_tokens: int = 20000
    reverse: bool = False
    seed: int = 0


def char_lm_config(cfg, *, reverse: bool = False) -> CharLMConfig:
    """The profile's char-LSTM: smoke trains in well under a minute; cpu takes a fixed 2,500 steps
    (about 0.1 s of one core each, so ~5 minutes on an idle 2-core machine, well inside 10)."""
    base = cfg.pick(
        smoke=CharLMConfig(hidden=192, steps=350, block_size=64, batch_size=32, eval_every=50,
                           eval_tokens=8000),
        cpu=CharLMConfig(hidden=256, layers=1, embed=64, steps=2500, block_size=100, batch_size=32,
                         lr=3e-3, eval_every=250, eval_tokens=20000),
        gpu=CharLMConfig(hidden=768, layers=2, embed=128, dropout=0.2, steps=6000, block_size=128,
                         batch_size=128, lr=2e-3, eval_every=500, eval_tokens=50000),
    )
    base.reverse = reverse
    return base


def train_char_lm(cfg, lm_config: CharLMConfig | None = None, *, progress: bool = True,
                  retrain: bool = False):
    """Train (or load from the cache) the char-level LSTM on the shared Tiny Shakespeare split.

    Args:
        cfg: the :class:`~genai_lab.config.LabConfig`.
        lm_config: sizes; default :func:`char_lm_config` of the profile.
    Returns:
        ``(model, meta)``: ``meta["metrics"]`` holds ``val_nats`` (whole validation split),
        ``curve`` ``[(step, val nats on the first eval_tokens)]``, ``losses``, ``train_seconds``,
        ``steps_done``.  With ``reverse=True`` the model reads the text backwards (ELMo's second
        direction).
    """
    from .checkpoints import load_or_train
    from .text import random_windows, shakespeare_chars
    from .train import train_loop

    lc = lm_config or char_lm_config(cfg)
    if not isinstance(lc, CharLMConfig):
        raise TypeError(f"lm_config must be a CharLMConfig, got {type(lc).__name__}")
    corpus = shakespeare_chars()
    train_ids, val_ids = corpus.train, corpus.val
    if lc.reverse:
        train_ids, val_ids = train_ids.flip(0), val_ids.flip(0)

    def build():
        torch.manual_seed(lc.seed)
        return CharLSTM(corpus.tokenizer.vocab_size, lc.hidden, lc.layers, lc.embed, lc.dropout)

    def train(model):
        gen = torch.Generator().manual_seed(lc.seed + 1)

        def batches():
            while True:
                yield random_windows(train_ids, lc.block_size, lc.batch_size, generator=gen,
                                     device=cfg.device)

        def loss_fn(m, batch):
            logits, _ = m(batch[0])
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[1].reshape(-1))

        def eval_fn():
            return {"val_nats": stream_cross_entropy(model, val_ids, max_tokens=lc.eval_tokens)}

        opt = torch.optim.Adam(model.parameters(), lr=lc.lr)
        started = time.perf_counter()

        def cosine_factor(step):
            # cosine decay to lr/10 over the steps, or over the time budget if that runs out first
            done = step / lc.steps
            if lc.max_seconds:
                done = max(done, (time.perf_counter() - started) / lc.max_seconds)
            return 0.1 + 0.45 * (1 + math.cos(math.pi * min(done, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_factor)
        hist = train_loop(model, opt, batches(), loss_fn, lc.steps, eval_fn=eval_fn,
                          eval_every=lc.eval_every, scheduler=sched, clip_grad=1.0,
                          max_seconds=lc.max_seconds, progress=progress,
                          desc="char LSTM" + (" (backward)" if lc.reverse else ""))
        return {"val_nats": stream_cross_entropy(model, val_ids),
                "curve": hist.evals["val_nats"], "losses": hist.losses,
                "train_seconds": hist.seconds, "steps_done": len(hist.losses)}

    name = "rnn-char-lstm" + ("-reverse" if lc.reverse else "")
    return load_or_train(name, cfg, asdict(lc), build, train, retrain=retrain)


def overtaking_steps(curve: Sequence[tuple[int, float]], baselines: dict[int, float]) -> dict[int, int | None]:
    """For each n-gram order, the first training step at which the LSTM's validation loss is lower.

    Args:
        curve: ``[(step, val nats), ...]`` in step order (``meta["metrics"]["curve"]``).
        baselines: ``{n: val nats}`` measured on the same validation text.
    Returns:
        ``{n: step or None}`` (``None``: not overtaken within the curve).
    """
    if not isinstance(baselines, dict):
        raise TypeError(f"baselines must be a dict, got {type(baselines).__name__}")
    out = {}
    for n, value in baselines.items():
        out[n] = next((int(step) for step, loss in curve if loss < value), None)
    return out


def sample_text(model, tokenizer, prompt: str, n_chars: int, *, temperature: float = 1.0,
                seed: int = 0) -> str:
    """Continue ``prompt`` with ``n_chars`` sampled characters (seeded)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty str")
    gen = torch.Generator().manual_seed(seed)
    ids = model.generate(torch.tensor(tokenizer.encode(prompt)), n_chars, temperature=temperature,
                         generator=gen)
    return tokenizer.decode(ids)


# ====================================================================== why recurrence is slow
def time_sequence_layers(seq_lens: Sequence[int], *, d_model: int = 128, batch_size: int = 8,
                         repeats: int = 3, device=None) -> dict[str, list[float]]:
    """Seconds per forward+backward pass of one LSTM layer vs one self-attention layer.

    The LSTM must walk the ``T`` steps one after another; self-attention computes all ``T × T``
    scores in a few big matrix products.  Best of ``repeats`` after one warm-up.

    Returns:
        ``{"seq_lens": [...], "lstm": [seconds...], "attention": [seconds...]}``.
    """
    if not seq_lens or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of positive ints, got {seq_lens!r}")
    _check_positive_int("d_model", d_model)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("repeats", repeats)
    device = torch.device(device or "cpu")
    torch.manual_seed(0)
    lstm = nn.LSTM(d_model, d_model, batch_first=True).to(device)
    attn = nn.MultiheadAttention(d_model, num_heads=4, batch_first=True).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run_lstm(x):
        return lstm(x)[0].sum()

    def run_attn(x):
        return attn(x, x, x, need_weights=False)[0].sum()

    out = {"seq_lens": list(seq_lens), "lstm": [], "attention": []}
    for T in seq_lens:
        x = torch.randn(batch_size, T, d_model, device=device, requires_grad=True)
        for name, fn in (("lstm", run_lstm), ("attention", run_attn)):
            fn(x).backward()  # warm-up
            sync()
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                fn(x).backward()
                sync()
                best = min(best, time.perf_counter() - start)
            out[name].append(best)
    return out


# ====================================================================== bench
#: The issue's bars for the char LSTM's validation nats/char (none is stated for ``gpu``).
ISSUE_BARS = {"smoke": 2.20, "cpu": 1.75}


@register("rnn", "char-LSTM vs smoothed n-grams on Tiny Shakespeare; RNN vs LSTM memory; ELMo sense probe")
def bench_rnn(cfg) -> list[Metric]:
    """The chapter's reference experiment: the char LSTM's validation nats/char against the
    issue's bar, the best n-gram, the memory task at the longest distance, and ELMo's sense probe
    (held-out sense accuracy of the biLSTM vector, of the same networks untrained, of position
    alone, and the shuffled-label 95th percentile; chance 0.5)."""
    from .ngram import baseline_table

    table = baseline_table(cfg)
    forward_lm, meta = train_char_lm(cfg, progress=False)
    m = meta["metrics"]
    # ELMo's sense probe (genai_lab.elmo): the chapter's forward LSTM and its backward twin
    from .text import shakespeare_chars

    backward_lm, _ = train_char_lm(cfg, char_lm_config(cfg, reverse=True), progress=False)
    probe = sense_probe(forward_lm, backward_lm, shakespeare_chars().tokenizer, n_perm=1000)
    memory = run_memory_experiment(cfg, progress=False)
    longest = max(memory["config"].distances)
    best_ngram = min(table.values())
    # The recurrence's cost: 32x more positions means 32x more *sequential* LSTM steps, while
    # attention's extra work is parallel matrix products.  A speed figure, so the bench reports it.
    timing = time_sequence_layers([16, 512], d_model=256, batch_size=8, repeats=3, device=cfg.device)
    return [
        Metric("char_lstm_val_nats", m["val_nats"], higher_is_better=False,
               bar=ISSUE_BARS.get(cfg.profile), unit="nats/char"),
        Metric("char_lstm_train_seconds", m["train_seconds"], higher_is_better=False, unit="s"),
        Metric("char_lstm_train_steps", m["steps_done"], unit="steps"),
        Metric("char_bigram_val_nats", table[2], higher_is_better=False, unit="nats/char"),
        Metric("best_ngram_val_nats", best_ngram, higher_is_better=False, unit="nats/char"),
        Metric("lstm_minus_best_ngram", m["val_nats"] - best_ngram, higher_is_better=False,
               unit="nats/char"),
        Metric(f"memory_lstm_acc_d{longest}", memory["accuracy"]["lstm"][longest]),
        Metric(f"memory_rnn_acc_d{longest}", memory["accuracy"]["rnn"][longest]),
        Metric("lstm_time_ratio_T512_vs_T16", timing["lstm"][1] / timing["lstm"][0], unit="x"),
        Metric("attention_time_ratio_T512_vs_T16", timing["attention"][1] / timing["attention"][0],
               unit="x"),
        Metric("elmo_sense_acc_bilstm", probe.accuracy["biLSTM vector"]["all"]),
        Metric("elmo_sense_acc_untrained", probe.accuracy["untrained biLSTM"]["all"]),
        Metric("elmo_sense_null95", probe.null95["biLSTM vector"]["all"], higher_is_better=False),
        Metric("elmo_sense_acc_position", probe.accuracy["position only"]["all"], higher_is_better=False),
    ]
