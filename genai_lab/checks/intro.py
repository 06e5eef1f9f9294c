"""Checks for the introduction lab (matrix products and throughput)."""

from __future__ import annotations

from . import Exercise, check_function


def check_matmul(fn):
    """``fn(a, b)`` for lists of lists must equal ``torch.tensor(a) @ torch.tensor(b)``."""
    import torch

    g = torch.Generator().manual_seed(0)
    cases = []
    for n, k, m in [(1, 1, 1), (2, 3, 4), (5, 5, 2)]:
        a = torch.randn(n, k, generator=g, dtype=torch.float64)
        b = torch.randn(k, m, generator=g, dtype=torch.float64)
        cases.append(((a.tolist(), b.tolist()), {}, lambda out, e=(a @ b): _compare_nested(out, e)))
    return check_function(fn, cases, name="matmul")


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
