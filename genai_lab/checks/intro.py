"""Checks for the introduction lab (matrix products and throughput)."""

from __future__ import annotations

import time

from . import Exercise, check_function, run_check


def check_matmul(fn):
    """``fn(a, b)`` for lists of lists must equal ``torch.tensor(a) @ torch.tensor(b)``, and raise
    ``ValueError`` when the inner sizes differ."""
    import torch

    g = torch.Generator().manual_seed(0)
    cases = []
    for n, k, m in [(1, 1, 1), (2, 3, 4), (5, 5, 2)]:
        a = torch.randn(n, k, generator=g, dtype=torch.float64)
        b = torch.randn(k, m, generator=g, dtype=torch.float64)
        cases.append((a.tolist(), b.tolist(), a @ b))

    def body():
        for a, b, expected in cases:
            message = _compare_nested(fn(a, b), expected)
            if message:
                return f"({len(a)}, {len(b)}) @ ({len(b)}, {len(b[0])}): {message}"
        call = "matmul([[1, 2]], [[1, 2]]) (a has 2 columns, b has 1 row)"
        try:
            fn([[1.0, 2.0]], [[1.0, 2.0]])
        except ValueError:
            return None
        except Exception as err:  # noqa: BLE001 - named in the message
            return f"{call} should raise ValueError, it raised {type(err).__name__}: {err}"
        return f"{call} should raise ValueError, it returned a result"

    return run_check("matmul", body)


def _compare_nested(out, expected):
    import torch

    from . import describe_difference

    try:
        tensor = torch.tensor(out, dtype=torch.float64)
    except (TypeError, ValueError):
        return f"result should be a list of lists of numbers, got {type(out).__name__}"
    return describe_difference(tensor, expected, atol=1e-9)


def check_matmul_flops(fn):
    """``fn(n, k, m)``: floating-point operations of an (n, k) @ (k, m) product, 2·n·k·m."""
    return check_function(fn, [((1, 1, 1), {}, 2), ((2, 3, 4), {}, 48), ((512, 512, 512), {}, 2 * 512 ** 3)],
                          name="matmul_flops", atol=0)


def check_gflops(fn):
    """``fn(flops, seconds)`` in GFLOP/s; rejects a non-positive time with ValueError."""
    from . import run_check

    def body():
        for flops, seconds, want in [(2e9, 1.0, 2.0), (1e6, 1e-3, 1.0)]:
            got = fn(flops, seconds)
            if abs(got - want) > 1e-9:
                return f"gflops({flops:g}, {seconds:g}) is {got!r}, expected {want!r}"
        try:
            fn(1e9, 0.0)
        except ValueError:
            return None
        return "gflops(1e9, 0.0) should raise ValueError (a time must be positive)"

    return run_check("gflops", body)


def check_best_time(fn):
    """``fn(work, repeats)``: warm up once untimed, then the best (smallest) of ``repeats`` timings."""
    from . import run_check

    def body():
        calls = []

        def slow_first_call():
            calls.append(1)
            time.sleep(0.08 if len(calls) == 1 else 0.005)

        got = fn(slow_first_call, repeats=4)
        if len(calls) != 5:
            return f"with repeats=4 the work should run 5 times (1 warm-up + 4 timed), it ran {len(calls)}"
        if not isinstance(got, float):
            return f"should return seconds as a float, got {type(got).__name__}"
        if got >= 0.05:
            return (f"returned {got:.3f} s: the slow first call (0.08 s) was timed; run it once untimed "
                    "as a warm-up, then keep the best of the timed runs")
        if got < 0.004:
            return f"returned {got:.4f} s, less than one timed call takes (0.005 s): time each call"
        for bad in (0, -1):
            try:
                fn(slow_first_call, repeats=bad)
            except ValueError:
                continue
            return f"repeats={bad} should raise ValueError"
        return None

    return run_check("best_time", body)


# --------------------------------------------------------------------------- the lab's exercises
# ``matmul.check(fn)`` runs the check, ``.hint()`` nudges, ``.solution()`` shows the answer
# (genai_lab/solutions/intro.py).
matmul = Exercise(
    "intro", "matmul", check_matmul, ("matmul",),
    "compare the number of columns of a with the number of rows of b first. Then build the result "
    "row by row: entry (i, j) pairs row i of a with column j of b, multiplies the pairs and adds "
    "them up.")
matmul_flops = Exercise(
    "intro", "matmul_flops", check_matmul_flops, ("matmul_flops",),
    "count the outputs first (how many entries does an (n, m) result have?), then the "
    "multiplications and additions one output needs.")
gflops = Exercise(
    "intro", "gflops", check_gflops, ("gflops",),
    "operations per second is a division; 'giga' is a factor of a billion. Test the time before "
    "you divide.")
best_time = Exercise(
    "intro", "best_time", check_best_time, ("best_time",),
    "call the work once before you start timing (caches, thread pools and kernel selection warm up "
    "on the first call), then time each of the next calls with time.perf_counter() and keep the "
    "smallest: other programs can only make a run slower, never faster.")
