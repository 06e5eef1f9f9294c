"""Reference solutions of `labs/05_gpt_lab.ipynb`: Lab 5. Sampling and a KV-cached generation loop.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.gpt`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Scores (B, V) with all but the k largest of each row set to -inf."""
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def top_p_filter(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Scores (B, V) keeping the smallest set of most likely tokens whose probability reaches p."""
    sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
    probs = sorted_scores.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


def sample_with_temperature(scores: torch.Tensor, temperature: float,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of scores (B, V), drawn from softmax(scores / temperature): (B,)."""
    probs = torch.softmax(scores / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_with_kv_cache(model, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuation of idx (B, T) by max_new_tokens tokens: (B, T + max_new_tokens)."""
    out = model(idx, use_cache=True)
    for step in range(max_new_tokens):
        next_token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_token], dim=1)
        if step < max_new_tokens - 1:
            out = model(next_token, past_key_values=out.past_key_values, use_cache=True)
    return idx
