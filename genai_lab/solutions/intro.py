"""Reference solutions of `labs/00_intro_lab.ipynb`: Lab 0: measuring a matrix product.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.intro`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

def matmul(a, b):
    """Product of matrices given as lists of lists: (n, k) @ (k, m) -> (n, m)."""
    if len(a[0]) != len(b):
        raise ValueError(f"inner sizes differ: a has {len(a[0])} columns, b has {len(b)} rows")
    return [[sum(a[i][p] * b[p][j] for p in range(len(b))) for j in range(len(b[0]))]
            for i in range(len(a))]


def matmul_flops(n, k, m):
    """Floating-point operations of an (n, k) @ (k, m) product."""
    return 2 * n * k * m


def gflops(flops, seconds):
    """Throughput in GFLOP/s."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    return flops / seconds / 1e9


def best_time(work, repeats=5):
    """Seconds of the fastest of ``repeats`` calls of ``work()``, after one untimed warm-up call."""
    import time

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    work()  # warm-up: not timed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best
