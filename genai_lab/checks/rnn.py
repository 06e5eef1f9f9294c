"""Checks for lab 2 (RNN/LSTM and language models).

Each check compares the learner's function with a reference on fixed seeded inputs:
``torch.nn.LSTMCell`` for the LSTM step, :class:`genai_lab.ngram.NGramLM` and plain counting for
the n-gram exercises, :func:`genai_lab.ngram.apply_temperature` for the temperature.
"""

from __future__ import annotations

from collections import Counter

from . import CheckResult, check_function, describe_difference, run_check

_TEXT = "to be, or not to be: that is the question.\nwhether 'tis nobler in the mind to suffer"


def check_lstm_step(fn) -> CheckResult:
    """``fn(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh) -> (h_next, c_next)`` vs ``nn.LSTMCell``."""
    import torch

    cases = []
    for seed, (batch, inputs, hidden) in enumerate([(3, 5, 4), (1, 8, 16), (4, 2, 3)]):
        torch.manual_seed(seed)
        cell = torch.nn.LSTMCell(inputs, hidden)
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(batch, inputs, generator=g)
        h = torch.randn(batch, hidden, generator=g)
        c = torch.randn(batch, hidden, generator=g)
        with torch.no_grad():
            expected = tuple(t.clone() for t in cell(x, (h, c)))
        params = [p.detach() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        cases.append(((x, h, c, *params), {}, expected))

    def compare(case):
        args, _, expected = case
        actual = fn(*args)
        if not isinstance(actual, (tuple, list)) or len(actual) != 2:
            return f"should return a pair (h_next, c_next), got {type(actual).__name__}"
        for name, a, e in zip(("h_next", "c_next"), actual, expected):
            msg = describe_difference(a, e, atol=1e-5, rtol=0, path=name)
            if msg:
                return msg + " (compare with torch.nn.LSTMCell on the same weights; gate order i, f, g, o)"
        return None

    def body():
        for i, case in enumerate(cases, 1):
            msg = compare(case)
            if msg:
                return f"case {i} of {len(cases)}: {msg}"
        return None

    return run_check("lstm_step", body)


def _reference_bigrams(text: str) -> dict:
    out: dict = {}
    for (a, b), n in Counter(zip(text, text[1:])).items():
        out.setdefault(a, {})[b] = n
    return out


def check_count_bigrams(fn) -> CheckResult:
    """``fn(text) -> {first: {second: count}}`` vs plain counting."""
    cases = [(("abab",), {}, {"a": {"b": 2}, "b": {"a": 1}}),
             (("aaa",), {}, {"a": {"a": 2}}),
             (("x",), {}, {}),
             ((_TEXT,), {}, _reference_bigrams(_TEXT))]
    return check_function(fn, cases, name="count_bigrams")


def check_add_k_prob(fn) -> CheckResult:
    """``fn(counts, context, next_char, k, vocab_size)`` vs :class:`NGramLM` with add-k smoothing."""
    from ..ngram import NGramLM

    lm = NGramLM(2, smoothing="add_k", k=0.5).fit(_TEXT)
    counts = _reference_bigrams(_TEXT)
    V = lm.vocab_size  # the characters of _TEXT plus one "unknown" slot
    cases = [((counts, h, w, 0.5, V), {}, lm.prob(w, h))
             for h, w in [("t", "o"), ("t", "h"), ("t", "z"), (" ", "t"), ("q", "u"), ("e", "\n")]]
    cases += [(({"a": {"b": 3}}, "a", "b", 1.0, 4), {}, 4 / 7),
              (({"a": {"b": 3}}, "z", "b", 1.0, 4), {}, 0.25)]
    return check_function(fn, cases, name="add_k_prob", atol=1e-9, rtol=1e-9)


def check_apply_temperature(fn) -> CheckResult:
    """``fn(probs, temperature)`` vs :func:`genai_lab.ngram.apply_temperature`."""
    import torch

    from ..ngram import apply_temperature

    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    random_probs = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64) * 2, -1)
    cases = [((p, t), {}, apply_temperature(p, t))
             for p in (probs, random_probs) for t in (1.0, 0.5, 2.0, 0.1)]
    return check_function(fn, cases, name="apply_temperature", atol=1e-6)


def check_sample_with_temperature(fn) -> CheckResult:
    """``fn(probs, temperature, n, generator) -> int64 (n,)``: frequencies follow the tempered
    distribution (within 0.02 for 20,000 draws), and a small temperature picks the argmax."""
    import torch

    from ..ngram import apply_temperature

    probs = torch.tensor([0.1, 0.6, 0.05, 0.25], dtype=torch.float64)

    def body():
        for temperature in (1.0, 0.5, 2.0):
            draws = fn(probs, temperature, 20000, torch.Generator().manual_seed(1))
            if not isinstance(draws, torch.Tensor) or draws.shape != (20000,):
                return f"should return an int64 tensor of shape (20000,), got {getattr(draws, 'shape', type(draws))}"
            if draws.dtype != torch.long:
                return f"should return int64 indices, got dtype {draws.dtype}"
            freq = torch.bincount(draws, minlength=len(probs)).double() / len(draws)
            expected = apply_temperature(probs, temperature)
            worst = (freq - expected).abs().max().item()
            if worst > 0.02:
                return (f"at temperature {temperature} the sample frequencies {freq.numpy().round(3)} differ from "
                        f"the tempered distribution {expected.numpy().round(3)} by up to {worst:.3f}")
        cold = fn(probs, 0.05, 200, torch.Generator().manual_seed(2))
        if not bool((cold == 1).all()):
            return f"at temperature 0.05 every draw should be index 1 (p = 0.6), got {cold.unique().tolist()}"
        a = fn(probs, 1.0, 50, torch.Generator().manual_seed(3))
        b = fn(probs, 1.0, 50, torch.Generator().manual_seed(3))
        if not torch.equal(a, b):
            return "the same generator seed should give the same draws (pass generator= to torch.multinomial)"
        return None

    return run_check("sample_with_temperature", body)
