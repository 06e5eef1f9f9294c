"""Checks for the GPT lab: top-k, top-p, temperature sampling, a generation loop with a KV cache.

Each check runs the learner's function on fixed seeded inputs and compares it with the tested
reference in :mod:`genai_lab.sampling` / :mod:`genai_lab.gpt` (which match transformers' own
logits processors and ``GPT2LMHeadModel.generate``).
"""

from __future__ import annotations

from . import Exercise, run_check


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

    def drops_crossing_token(scores, p):
        """The classic slip: remove a token once the mass *including* it reaches p."""
        import torch

        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        remove = sorted_scores.softmax(-1).cumsum(-1) >= p
        remove[:, 0] = False
        return scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))

    def body():
        scores = _scores()
        for p in (0.1, 0.5, 0.9, 0.99):
            actual = fn(scores.clone(), p)
            msg = _compare_filtered(actual, top_p_filter(scores, p))
            if msg:
                if _compare_filtered(actual, drops_crossing_token(scores, p)) is None:
                    msg += (" — looks like: the token whose probability makes the running sum reach p was "
                            "removed; it must stay (remove a token only when the mass *before* it reaches p)")
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


# --------------------------------------------------------------------------- the lab's exercises
# ``top_k.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/gpt.py).
top_k = Exercise(
    "gpt", "top_k", check_top_k, ("top_k_filter",),
    "find the k-th largest score of each row (torch.topk gives them sorted), then mask every "
    "score strictly below it; keep the row dimension so it broadcasts.")
top_p = Exercise(
    "gpt", "top_p", check_top_p, ("top_p_filter",),
    "sort each row, turn the sorted scores into probabilities and accumulate them. A token is "
    "removed when the mass of the tokens before it already reaches p (subtract its own "
    "probability from the running sum); then scatter the decision back to the original order.")
temperature_sampling = Exercise(
    "gpt", "temperature_sampling", check_temperature_sampling, ("sample_with_temperature",),
    "scale, softmax over the vocabulary, one multinomial draw per row with the generator, then "
    "drop the trailing axis of size 1.")
kv_cache_generation = Exercise(
    "gpt", "kv_cache_generation", check_kv_cache_generation, ("generate_with_kv_cache",),
    "call the model on the whole prompt once; afterwards each call gets only the token you just "
    "chose, shape (B, 1), plus the past_key_values of the previous output. The next token is the "
    "argmax of the last position's logits. You need max_new_tokens tokens but one fewer model "
    "call after the prompt.")
