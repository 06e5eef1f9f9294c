"""Checks for the GPT lab: top-k, top-p, temperature sampling, a generation loop with a KV cache.

Each check runs the learner's function on fixed seeded inputs and compares it with the tested
reference in :mod:`genai_lab.sampling` / :mod:`genai_lab.gpt` (which match transformers' own
logits processors and ``GPT2LMHeadModel.generate``).
"""

from __future__ import annotations

from . import run_check


def _scores():
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 40, generator=g) * 2.5


def _compare_filtered(actual, expected) -> str | None:
    import torch

    if not isinstance(actual, torch.Tensor):
        return f"should return a tensor, got {type(actual).__name__}"
    if actual.shape != expected.shape:
        return f"has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    kept_a, kept_e = ~torch.isinf(actual), ~torch.isinf(expected)
    if not torch.equal(kept_a, kept_e):
        row = int((kept_a != kept_e).any(-1).nonzero()[0])
        return (f"row {row} keeps {int(kept_a[row].sum())} tokens, expected {int(kept_e[row].sum())} "
                "(removed tokens must be set to -inf)")
    if not torch.allclose(actual[kept_a], expected[kept_e], atol=1e-5):
        return "the kept scores changed; a filter must leave the surviving scores as they were"
    return None


def check_top_k(fn) -> "CheckResult":  # noqa: F821
    """``fn(scores (B, V), k) -> scores`` with all but the k best of each row set to -inf."""
    from ..sampling import top_k_filter

    def body():
        scores = _scores()
        for k in (1, 3, 10, 40):
            msg = _compare_filtered(fn(scores.clone(), k), top_k_filter(scores, k))
            if msg:
                return f"k={k}: result {msg}"
        return None

    return run_check("top-k filter", body)


def check_top_p(fn) -> "CheckResult":  # noqa: F821
    """``fn(scores (B, V), p) -> scores`` keeping the smallest set of tokens with probability ≥ p."""
    from ..sampling import top_p_filter

    def body():
        scores = _scores()
        for p in (0.1, 0.5, 0.9, 0.99):
            msg = _compare_filtered(fn(scores.clone(), p), top_p_filter(scores, p))
            if msg:
                return f"p={p}: result {msg}"
        return None

    return run_check("top-p (nucleus) filter", body)


def check_temperature_sampling(fn) -> "CheckResult":  # noqa: F821
    """``fn(scores (B, V), temperature, generator) -> (B,) int64`` drawn from softmax(scores / T)."""
    import torch

    def body():
        scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
        for temperature in (0.5, 2.0):
            g = torch.Generator().manual_seed(0)
            draws = fn(scores, temperature, g)
            if not isinstance(draws, torch.Tensor) or draws.shape != (4000,):
                return f"should return a (B,) tensor of token ids, got {getattr(draws, 'shape', type(draws).__name__)}"
            freq = torch.bincount(draws.long(), minlength=4)[:4].float() / 4000
            expected = torch.softmax(scores[0] / temperature, -1)
            if (freq - expected).abs().max() > 0.03:
                return (f"temperature={temperature}: sampled frequencies {[round(x, 3) for x in freq.tolist()]} "
                        f"differ from softmax(scores / T) = {[round(x, 3) for x in expected.tolist()]}")
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        if not torch.equal(fn(scores[:50], 1.0, g1), fn(scores[:50], 1.0, g2)):
            return "the same seeded generator should give the same draws (pass generator= to torch.multinomial)"
        return None

    return run_check("temperature sampling", body)


def check_kv_cache_generation(fn) -> "CheckResult":  # noqa: F821
    """``fn(model, idx (B, T), max_new_tokens) -> (B, T + n)`` greedy, feeding one new token per step."""
    import torch

    from ..gpt import GPTConfig, TinyGPT, generate

    def body():
        torch.manual_seed(0)
        model = TinyGPT(GPTConfig(vocab_size=23, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
        idx = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
        fed = []
        hook = model.register_forward_pre_hook(lambda mod, args, kwargs: fed.append(args[0].shape[1]),
                                               with_kwargs=True)
        try:
            out = fn(model, idx, 12)
        finally:
            hook.remove()
        expected = generate(model, idx, 12, use_cache=True)
        if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
            return f"should return a tensor of shape {tuple(expected.shape)}, got {getattr(out, 'shape', type(out).__name__)}"
        if not torch.equal(out, expected):
            pos = int((out != expected).any(0).nonzero()[0])
            return f"tokens differ from greedy decoding first at position {pos}"
        if sum(fed) > idx.shape[1] + 12:
            return (f"the model was fed {sum(fed)} positions in {len(fed)} calls; with a KV cache it needs "
                    f"only {idx.shape[1] + 11} (the prompt once, then one new token per step)")
        return None

    return run_check("generation with a KV cache", body)
