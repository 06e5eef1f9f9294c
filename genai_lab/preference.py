"""RLHF's idea on the chapter's tiny GPT: preferences → a reward model → best-of-n, and DPO.

RLHF tunes a language model toward the answers people prefer.  People compare two answers; a
**reward model** learns to score answers so that the preferred one scores higher (the
Bradley–Terry model: P(a preferred to b) = σ(r(a) − r(b))); the language model (the *policy*) is
then pushed toward higher reward while a penalty keeps it close to where it started.

Here every piece is small enough to run in seconds on a CPU:

- **the person** is a rule, so the run is reproducible: of two continuations it prefers the one
  with more line breaks (shorter speeches) — :func:`line_breaks` is its hidden taste;
- **the reward model** (:class:`BagOfCharsReward`) only sees which characters a text contains,
  and learns the taste from labelled pairs (:func:`fit_reward_model`);
- **best-of-n** (:func:`best_of_n`) samples n continuations and keeps the one the reward model
  scores highest: no training, n times the sampling cost;
- **DPO** (direct preference optimisation, Rafailov et al., 2023) trains the policy on the
  preference pairs themselves (:func:`dpo_loss`, :func:`train_dpo`): the log-probability ratio
  policy/reference of the chosen continuation must grow relative to the rejected one's.  A frozen
  copy of the starting model is the reference, and β sets how far the policy may drift.

Every outcome is judged by the person's taste on *fresh* samples (:func:`taste_of_samples`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gpt import TinyGPT, generate


def _check_int(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int ≥ {low}, got {value!r}")
    return value


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_ids(ids, name: str) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
        raise TypeError(f"{name} must be an int64 tensor of shape (B, T)")
    return ids


def line_breaks(texts: list[str]) -> torch.Tensor:
    """The person's taste: how many line breaks each text has, float32 ``(N,)``."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str")
    return torch.tensor([t.count("\n") for t in texts], dtype=torch.float32)


def prompt_windows(data: torch.Tensor, n: int, length: int, *, generator: torch.Generator) -> torch.Tensor:
    """``n`` random windows of ``length`` token ids from ``data`` (1-D), int64 ``(n, length)``."""
    from .text import random_windows

    return random_windows(data, _check_int(length, "length"), _check_int(n, "n"), generator=generator)[0]


def sample_continuations(model: TinyGPT, prompts: torch.Tensor, length: int, *, n: int = 1,
                         generator: torch.Generator) -> torch.Tensor:
    """``n`` sampled continuations (temperature 1, no filter) of each prompt.

    Args:
        prompts: int64 ``(B, P)``.
    Returns:
        int64 ``(B * n, P + length)``: prompt i's samples are rows ``i*n … i*n + n − 1``.
    """
    _check_ids(prompts, "prompts")
    _check_int(length, "length")
    _check_int(n, "n")
    if prompts.shape[1] + length > model.config.block_size:
        raise ValueError(f"length: prompt {prompts.shape[1]} + length {length} exceeds the model's "
                         f"block_size {model.config.block_size}")
    device = next(model.parameters()).device
    if generator.device != device:  # sampling draws on the model's device: derive a seeded generator there
        generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    repeated = prompts.to(device).repeat_interleave(n, dim=0)
    return generate(model, repeated, length, do_sample=True, generator=generator).cpu()


def continuation_logprob(model: TinyGPT, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Sum of log P(token | earlier tokens) over ``ids[:, prompt_len:]``, float ``(B,)``.

    Gradients flow when the caller has them enabled (the DPO policy), so this is the quantity
    DPO pushes up or down.
    """
    _check_ids(ids, "ids")
    if isinstance(prompt_len, bool) or not isinstance(prompt_len, int) or not 1 <= prompt_len < ids.shape[1]:
        raise ValueError(f"prompt_len must be an int in [1, {ids.shape[1]}), got {prompt_len!r}")
    if ids.shape[1] - 1 > model.config.block_size:
        raise ValueError(f"ids: {ids.shape[1]} tokens need a context of {ids.shape[1] - 1} > block_size "
                         f"{model.config.block_size}")
    device = next(model.parameters()).device
    ids = ids.to(device)
    logp = torch.log_softmax(model(ids[:, :-1]).logits.float(), dim=-1)      # (B, T-1, V)
    token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]                    # (B, T-1): log P(ids[t] | ids[:t])
    return token_logp[:, prompt_len - 1:].sum(dim=1)


def decode_continuations(tokenizer, ids: torch.Tensor, prompt_len: int) -> list[str]:
    """The continuations (without their prompts) as text."""
    return [tokenizer.decode(row[prompt_len:].tolist()) for row in _check_ids(ids, "ids")]


# --------------------------------------------------------------------------- preference pairs


@dataclass
class PreferencePairs:
    """Pairs of continuations of the same prompt, one preferred by the person.

    ``chosen``, ``rejected``: int64 ``(N, P + L)``; ``prompt_len``: P.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    prompt_len: int

    def __len__(self) -> int:
        return len(self.chosen)


def preference_pairs(model: TinyGPT, tokenizer, prompts: torch.Tensor, length: int, *,
                     generator: torch.Generator, taste=line_breaks) -> PreferencePairs:
    """Sample two continuations per prompt and let ``taste`` pick one; ties are dropped."""
    pairs = sample_continuations(model, prompts, length, n=2, generator=generator)
    a, b = pairs[0::2], pairs[1::2]
    prompt_len = prompts.shape[1]
    score_a = taste(decode_continuations(tokenizer, a, prompt_len))
    score_b = taste(decode_continuations(tokenizer, b, prompt_len))
    keep = score_a != score_b
    a_wins = (score_a > score_b)[keep]
    a, b = a[keep], b[keep]
    chosen = torch.where(a_wins[:, None], a, b)
    rejected = torch.where(a_wins[:, None], b, a)
    return PreferencePairs(chosen, rejected, prompt_len)


# --------------------------------------------------------------------------- the reward model


class BagOfCharsReward(nn.Module):
    """A reward model that sees only how often each symbol occurs: r(x) = w · count(x) + b.

    ``count(x)`` counts each vocabulary symbol in the continuation, so ``w[c]`` reads as "how much
    the person likes one more symbol c".  Input: int64 ``(B, L)``; output ``(B,)``.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = _check_int(vocab_size, "vocab_size")
        self.score = nn.Linear(vocab_size, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, continuation_ids: torch.Tensor) -> torch.Tensor:
        _check_ids(continuation_ids, "continuation_ids")
        counts = F.one_hot(continuation_ids, self.vocab_size).float().sum(dim=1)  # (B, V)
        return self.score(counts).squeeze(-1)


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(r(chosen) − r(rejected)), averaged: the reward model's loss on preference pairs."""
    return -F.logsigmoid(reward_chosen - reward_rejected).mean()


def fit_reward_model(pairs: PreferencePairs, vocab_size: int, *, steps: int = 300, lr: float = 0.05,
                     l2: float = 0.01, generator: torch.Generator | None = None) -> tuple[BagOfCharsReward, list[float]]:
    """Train :class:`BagOfCharsReward` on the pairs (full batch, Adam). Returns ``(model, losses)``.

    ``l2`` penalises large weights (``l2 · ‖w‖²`` added to the loss): without it, a symbol that
    happens to occur once, in a few chosen answers only, gets a huge weight.  ``losses`` are the
    Bradley–Terry losses alone.
    """
    _check_int(steps, "steps")
    _check_positive(lr, "lr")
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a number ≥ 0, got {l2!r}")
    if len(pairs) < 2:
        raise ValueError(f"pairs must hold at least 2 pairs, got {len(pairs)}")
    if generator is not None:
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    reward = BagOfCharsReward(vocab_size)
    opt = torch.optim.Adam(reward.parameters(), lr=lr)
    chosen, rejected = pairs.chosen[:, pairs.prompt_len:], pairs.rejected[:, pairs.prompt_len:]
    losses = []
    for _ in range(steps):
        loss = bradley_terry_loss(reward(chosen), reward(rejected))
        opt.zero_grad()
        (loss + l2 * reward.score.weight.pow(2).sum()).backward()
        opt.step()
        losses.append(loss.item())
    return reward.eval(), losses


@torch.no_grad()
def pair_accuracy(reward: BagOfCharsReward, pairs: PreferencePairs) -> float:
    """Share of pairs whose chosen continuation the reward model scores higher."""
    chosen = reward(pairs.chosen[:, pairs.prompt_len:])
    rejected = reward(pairs.rejected[:, pairs.prompt_len:])
    return (chosen > rejected).float().mean().item()


# --------------------------------------------------------------------------- best-of-n


@torch.no_grad()
def best_of_n(model: TinyGPT, reward: BagOfCharsReward, prompts: torch.Tensor, length: int, n: int, *,
              generator: torch.Generator) -> torch.Tensor:
    """For each prompt, the one of ``n`` sampled continuations the reward model scores highest.

    Returns int64 ``(B, P + length)``.
    """
    samples = sample_continuations(model, prompts, length, n=_check_int(n, "n"), generator=generator)
    scores = reward(samples[:, prompts.shape[1]:]).view(len(prompts), n)
    best = scores.argmax(dim=1) + torch.arange(len(prompts)) * n
    return samples[best]


# --------------------------------------------------------------------------- DPO


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's loss: −log σ(β · [(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]), averaged.

    All four inputs are the summed continuation log-probabilities ``(B,)`` of the chosen (c) and
    rejected (r) continuations under the policy π and the frozen reference π_ref.
    """
    _check_positive(beta, "beta")
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


@dataclass
class DPOResult:
    """What :func:`train_dpo` measured: losses and the share of batch pairs ranked right, per step."""

    losses: list[float]
    pair_accuracy: list[float]
    seconds: float


def train_dpo(policy: TinyGPT, pairs: PreferencePairs, *, beta: float = 0.1, lr: float = 3e-4,
              steps: int = 40, batch_size: int = 32, generator: torch.Generator) -> tuple[TinyGPT, DPOResult]:
    """Train ``policy`` with DPO on the pairs; a frozen copy of its starting weights is the reference.

    Returns ``(reference, result)``; ``policy`` is trained in place.
    """
    import time

    _check_int(steps, "steps")
    _check_int(batch_size, "batch_size")
    _check_positive(lr, "lr")
    _check_positive(beta, "beta")
    if len(pairs) < batch_size:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(pairs)} pairs")
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.requires_grad_(True)  # a cached model may come back frozen
    device = next(policy.parameters()).device
    chosen, rejected = pairs.chosen.to(device), pairs.rejected.to(device)
    with torch.no_grad():
        ref_chosen = continuation_logprob(reference, chosen, pairs.prompt_len)
        ref_rejected = continuation_logprob(reference, rejected, pairs.prompt_len)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    losses, accuracies = [], []
    start = time.perf_counter()
    for _ in range(steps):
        batch = torch.randperm(len(pairs), generator=generator)[:batch_size].to(device)
        pol_chosen = continuation_logprob(policy, chosen[batch], pairs.prompt_len)
        pol_rejected = continuation_logprob(policy, rejected[batch], pairs.prompt_len)
        loss = dpo_loss(pol_chosen, pol_rejected, ref_chosen[batch], ref_rejected[batch], beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        margin = (pol_chosen - ref_chosen[batch]) - (pol_rejected - ref_rejected[batch])
        accuracies.append((margin > 0).float().mean().item())
    policy.eval()
    return reference, DPOResult(losses, accuracies, time.perf_counter() - start)


# --------------------------------------------------------------------------- judging


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error of a 1-D tensor of at least 2 values."""
    values = values.float()
    if values.ndim != 1 or len(values) < 2:
        raise ValueError("values must be 1-D with at least 2 entries")
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


def taste_of_samples(tokenizer, ids: torch.Tensor, prompt_len: int, taste=line_breaks) -> torch.Tensor:
    """The person's score of each continuation in ``ids`` (B,)."""
    return taste(decode_continuations(tokenizer, ids, prompt_len))


@torch.no_grad()
def kl_from_reference(policy: TinyGPT, reference: TinyGPT, samples: torch.Tensor, prompt_len: int) -> float:
    """Monte-Carlo KL(π ‖ π_ref) per continuation, in nats: mean of log π − log π_ref over π's samples."""
    return (continuation_logprob(policy, samples, prompt_len)
            - continuation_logprob(reference, samples, prompt_len)).mean().item()
