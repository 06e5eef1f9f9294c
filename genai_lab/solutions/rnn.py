"""Reference solutions of `labs/02_rnn_lab.ipynb`: Lab 2: LSTM cell, n-gram counting, temperature sampling.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.rnn`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch


def lstm_step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step: x (B, I), h and c (B, H), weights as in torch.nn.LSTMCell -> (h_next, c_next)."""
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


def count_bigrams(text):
    """Counts of adjacent character pairs: {first: {second: count}}."""
    counts = {}
    for first, second in zip(text, text[1:]):
        counts.setdefault(first, {})
        counts[first][second] = counts[first].get(second, 0) + 1
    return counts


def add_k_prob(counts, context, next_char, k, vocab_size):
    """P(next_char | context) with add-k smoothing, from count_bigrams-style counts."""
    following = counts.get(context, {})
    total = sum(following.values())
    return (following.get(next_char, 0) + k) / (total + k * vocab_size)


def apply_temperature(probs, temperature):
    """probs (V,) summing to 1, temperature > 0 -> probs (V,) reshaped by the temperature."""
    powered = probs.double() ** (1.0 / temperature)
    return (powered / powered.sum()).to(probs.dtype)


def sample_with_temperature(probs, temperature, n, generator):
    """n indices drawn from probs reshaped by temperature -> int64 (n,)."""
    return torch.multinomial(apply_temperature(probs, temperature).float(), num_samples=n,
                             replacement=True, generator=generator)


def perplexity(logits, targets):
    """exp of the mean cross-entropy (nats per token) of ``logits (N, V)`` for ``targets (N,)``."""
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits must be (N, V) and targets (N,), got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    log_probs = torch.log_softmax(logits, dim=-1)
    nats = -log_probs[torch.arange(len(targets)), targets].mean()
    return torch.exp(nats)
