"""Reference solutions of `labs/03_attention_lab.ipynb`: Lab 3. Attention from scratch.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.attention`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import math

import torch
from torch import nn


def attention(query, key, value, mask=None):
    """softmax(Q Kᵀ / √d_k) V.  mask: bool, broadcastable to (..., T_q, T_k), True = may attend.

    Returns (output (..., T_q, d_v), weights (..., T_q, T_k)).
    """
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def causal_mask(n):
    """(n, n) bool, True where query i may attend to key j (j <= i)."""
    return torch.ones(n, n, dtype=torch.bool).tril()


def padding_mask(lengths, max_len):
    """(B, max_len) bool, True for the first lengths[b] positions of row b."""
    return torch.arange(max_len)[None, :] < torch.as_tensor(lengths)[:, None]


def split_heads(x, num_heads):
    """(B, T, D) -> (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.view(b, t, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x):
    """(B, H, T, d_head) -> (B, T, H * d_head)."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def multi_head_attention(x, reference, key_padding_mask):
    """Self-attention of x (B, T, D) with the weights of nn.MultiheadAttention `reference`.

    key_padding_mask: (B, T) bool, True = real token.  Returns (output (B, T, D), weights (B, H, T, T)).
    """
    w_q, w_k, w_v = reference.in_proj_weight.chunk(3)
    b_q, b_k, b_v = reference.in_proj_bias.chunk(3)
    heads = reference.num_heads
    q = split_heads(nn.functional.linear(x, w_q, b_q), heads)
    k = split_heads(nn.functional.linear(x, w_k, b_k), heads)
    v = split_heads(nn.functional.linear(x, w_v, b_v), heads)
    out, weights = attention(q, k, v, key_padding_mask[:, None, None, :])
    return reference.out_proj(merge_heads(out)), weights


def sinusoidal_positions(num_positions, dim):
    """(num_positions, dim) table: even columns sin(p / 10000^(2i/dim)), odd columns cos(...)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    pe = torch.zeros(num_positions, dim)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe


def greedy_decode(model, src, max_new_tokens):
    """Greedy decoding with the chapter's Seq2SeqTransformer: ``src (B, S)`` → ``(B, 1 + t)`` ids.

    Starts with BOS; each step appends the most likely next token; a sequence that produced EOS gets
    PAD afterwards; stops after ``max_new_tokens`` steps or once every sequence has produced EOS.
    """
    from genai_lab.transformer import BOS, EOS, PAD

    memory, keep = model.encode(src)
    generated = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model.decode(generated, memory, keep)[:, -1].argmax(-1)
        next_token = torch.where(finished, torch.full_like(next_token, PAD), next_token)
        generated = torch.cat([generated, next_token[:, None]], dim=1)
        finished |= next_token == EOS
        if finished.all():
            break
    return generated
