"""Checks for lab 2 (RNN/LSTM and language models).

Each check compares the learner's function with a reference on fixed seeded inputs:
``torch.nn.LSTMCell`` for the LSTM step, :class:`genai_lab.ngram.NGramLM` and plain counting for
the n-gram exercises, :func:`genai_lab.ngram.apply_temperature` for the temperature.
"""

from __future__ import annotations

from collections import Counter

from . import CheckResult, Exercise, check_function, describe_difference, expect, name_mistake, run_check

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

    def with_gate_order(args, order: str):
        """The LSTM step with the four gate blocks read in ``order`` (PyTorch's is "ifgo")."""
        x, h, c, w_ih, w_hh, b_ih, b_hh = args
        blocks = dict(zip(order, (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)))
        c_next = torch.sigmoid(blocks["f"]) * c + torch.sigmoid(blocks["i"]) * torch.tanh(blocks["g"])
        return torch.sigmoid(blocks["o"]) * torch.tanh(c_next), c_next

    def compare(case):
        args, _, expected = case
        actual = fn(*args)
        if not isinstance(actual, (tuple, list)) or len(actual) != 2:
            return f"should return a pair (h_next, c_next), got {type(actual).__name__}"
        for name, a, e in zip(("h_next", "c_next"), actual, expected):
            msg = describe_difference(a, e, atol=1e-5, rtol=0, path=name)
            if msg:
                mistakes = {f"the gate blocks are read in the order {', '.join(order)}; PyTorch stacks "
                            "them as i, f, g, o": (lambda order=order: with_gate_order(args, order))
                            for order in ("ifog", "fiog", "figo", "igfo")}
                return msg + (name_mistake(tuple(actual), mistakes, atol=1e-5, rtol=0)
                              or " (compare with torch.nn.LSTMCell on the same weights; gate order i, f, g, o)")
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
    mistake = "the probabilities are raised to the power T; the temperature divides the log-probabilities (power 1/T)"
    cases = [((p, t), {}, expect(apply_temperature(p, t), {mistake: lambda p=p, t=t: apply_temperature(p, 1 / t)},
                                 atol=1e-6))
             for p in (probs, random_probs) for t in (1.0, 0.5, 2.0, 0.1)]
    return check_function(fn, cases, name="apply_temperature")


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


def check_perplexity(fn):
    """``fn(logits (N, V), targets (N,))`` = exp(mean cross-entropy); uniform logits give V;
    mismatched lengths raise ValueError."""
    import torch
    import torch.nn.functional as F

    def body():
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(50, 7, generator=g) * 3
        targets = torch.randint(0, 7, (50,), generator=g)
        want = float(torch.exp(F.cross_entropy(logits, targets)))
        got = float(fn(logits, targets))
        if abs(got - want) > 1e-4 * want:
            mean_prob = float(F.softmax(logits, -1)[torch.arange(50), targets].mean())
            if abs(got - 1 / mean_prob) < 1e-4 * want:
                return f"got {got:.4f}: that is 1 / mean probability; average the log-probabilities (nats) first"
            if abs(got - float(F.cross_entropy(logits, targets))) < 1e-6:
                return f"got {got:.4f}, the cross-entropy itself (nats per token); perplexity is its exp"
            return f"got {got:.4f}, expected exp(mean cross-entropy) = {want:.4f}"
        uniform = float(fn(torch.zeros(10, 65), torch.arange(10)))
        if abs(uniform - 65) > 1e-3:
            return f"uniform logits over 65 characters should give perplexity 65, got {uniform:.4f}"
        try:
            fn(logits, targets[:-1])
        except ValueError:
            return None
        return "logits (50, 7) with targets (49,) should raise ValueError"

    return run_check("perplexity", body)

# --------------------------------------------------------------------------- the lab's exercises
# ``lstm_step.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/rnn.py).
lstm_step = Exercise(
    "rnn", "lstm_step", check_lstm_step, ("lstm_step",),
    "one affine map of x and one of h give all four gate pre-activations side by side, shape (B, "
    "4H); cut them into four equal blocks along the feature axis in PyTorch's order input, "
    "forget, cell, output. The cell candidate uses tanh, the three gates use the sigmoid.")
count_bigrams = Exercise(
    "rnn", "count_bigrams", check_count_bigrams, ("count_bigrams",),
    "pair each character with the one after it (the text and the text shifted by one), and count "
    "each pair in a nested dict; dict.setdefault or collections.Counter saves the bookkeeping.")
add_k_prob = Exercise(
    "rnn", "add_k_prob", check_add_k_prob, ("add_k_prob",),
    "look up the counts after the context (an empty dict if never seen), add up their total, then "
    "apply the formula; check that an unseen context comes out as 1/V.")
apply_temperature = Exercise(
    "rnn", "apply_temperature", check_apply_temperature, ("apply_temperature",),
    "raise each probability to the power 1/T (not T), then renormalise. Compute in float64 and "
    "return the input's dtype; a zero stays zero.")
sample_with_temperature = Exercise(
    "rnn", "sample_with_temperature", check_sample_with_temperature, ("sample_with_temperature",),
    "reuse your apply_temperature, then let torch.multinomial draw with replacement; pass the "
    "generator along so the draws repeat for the same seed.")
perplexity = Exercise(
    "rnn", "perplexity", check_perplexity, ("perplexity",),
    "log_softmax gives log-probabilities; pick each row's target column, average the negative "
    "log-probabilities (that is nats per token), and take exp. Compare the first dimensions "
    "before anything else.")
