"""Page audits: what the build checks so that every page tells the truth about its own run.

- :func:`hand_typed_numbers`: result-like numbers (decimals, percentages, ``2.2×`` ratios) in a
  notebook's markdown that come from no run: a number the prose quotes must be printed by the code
  (a claim, a printed sentence), glued (``{glue}`` roles), or carry a citation.  Constants the page
  sets (``15 %`` masking, ``top-p 0.9``) are declared in the cell with ``<!-- constants: 15 %, 0.9 -->``.
- :func:`output_problems`: junk in an executed notebook: progress bars, stray object reprs
  (``<matplotlib…>``, ``Text(…)``), anything on stderr (warnings), the same output twice in a cell.
- :func:`figure_problems`: labels that overlap and log axes that print powers of ten; with
  ``GENAI_LAB_AUDIT_FIGURES=1`` every figure a notebook shows is audited and problems go to stderr,
  where :func:`output_problems` finds them.
- :func:`notebook_claims`: every ``gl.claim(…)`` call of a notebook (read from its source, not run),
  so the tests can check the claims shown from ``cpu``/``gpu`` against the recorded results.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------- hand-typed numbers
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_ROLE = re.compile(r"\{[a-z:\-]+\}`[^`]*`")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)|https?://\S+")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HEADING = re.compile(r"^#{1,6} .*$", re.M)
_CONSTANTS = re.compile(r"<!--\s*constants:(.*?)-->", re.S)
_CITATION = re.compile(r"et al\.|\([A-Z][A-Za-z\-]+(?: (?:and|&) [A-Z][A-Za-z\-]+)?,? (?:19|20)\d\d[a-z]?\)"
                       r"|\[[^\]]+\]\(https?://")
#: result-like numbers: decimals, percentages, "2.2×" ratios (not part of a name such as GPT-3.5 or v1.5)
_NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?×|\d+(?:,\d{3})*\.\d+)(?![\w.]*\d)")
#: constants allowed on every page (the masking recipe, chance levels, round shares)
ALWAYS_ALLOWED = {"15 %", "80 %", "10 %", "50 %", "100 %", "0 %", "1.0", "0.5"}


def _normalise(token: str) -> str:
    token = token.strip()
    token = re.sub(r"(\d)\s?%", r"\1 %", token)
    return re.sub(r"(\d)\s?×", r"\1×", token)


@dataclass
class Finding:
    """One problem on one page: where and what."""

    notebook: str
    cell: int
    problem: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.problem}"


def _cells(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["cells"]


def _code_cells(path: Path):
    """``(index, cell)`` for every code cell of notebook ``path``."""
    return [(i, c) for i, c in enumerate(_cells(path)) if c.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def markdown_numbers(text: str) -> list[str]:
    """Result-like numbers in markdown ``text`` that come from no run, no citation, no constant."""
    allowed = set(ALWAYS_ALLOWED)
    for block in _CONSTANTS.findall(text):
        allowed |= {_normalise(t) for t in block.split(",") if t.strip()}
    for pattern in (_FENCE, _COMMENT, _ROLE, _INLINE_CODE, _MATH, _HEADING):
        text = pattern.sub(" ", text)
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        if _CITATION.search(paragraph):
            continue
        paragraph = _LINK_TARGET.sub(" ", paragraph)
        for match in _NUMBER.finditer(paragraph):
            token = _normalise(match.group(1))
            if token not in allowed:
                found.append(token)
    return found


def hand_typed_numbers(path: str | Path) -> list[Finding]:
    """Every result-like number in the markdown cells of notebook ``path`` that no run produced."""
    path = Path(path)
    out = []
    for i, cell in enumerate(_cells(path)):
        if cell.get("cell_type") == "markdown":
            for token in markdown_numbers(_source(cell)):
                out.append(Finding(path.name, i, f"hand-typed number {token!r} in the prose (print it, "
                                   "glue it, cite its source, or declare it in <!-- constants: … -->)"))
    return out


# ---------------------------------------------------------------------------- executed outputs
_PROGRESS = re.compile(r"\d+%\|[^\n]*\||\?it/s\]|it/s\]|s/it\]|\d+/\d+ \[\d\d:\d\d")
_STRAY_REPR = re.compile(r"^(<matplotlib\.|<Figure size|\[<matplotlib\.|Text\(|Legend\(|<[\w.]+ (object )?at 0x[0-9a-f]+>)")


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def output_problems(path: str | Path) -> list[Finding]:
    """Progress bars, stray reprs, stderr output and doubled outputs in executed notebook ``path``."""
    path = Path(path)
    out = []
    for i, cell in _code_cells(path):
        seen: list[str] = []
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            text = _output_text(output)
            data = output.get("data", {})
            if kind == "stream" and output.get("name") == "stderr" and text.strip():
                out.append(Finding(path.name, i, f"stderr output: {text.strip().splitlines()[0][:120]!r}"))
            elif kind == "error":
                out.append(Finding(path.name, i, f"error output: {output.get('ename')}"))
            if _PROGRESS.search(text):
                out.append(Finding(path.name, i, f"progress bar: {text.strip()[:80]!r}"))
            if kind == "execute_result" and _STRAY_REPR.match(text.strip()) and len(data) == 1:
                out.append(Finding(path.name, i, f"stray repr: {text.strip()[:80]!r} (end the line with ';')"))
            stripped = text.strip()
            if stripped and stripped in seen:
                out.append(Finding(path.name, i, f"the same output twice: {stripped[:60]!r}"))
            if stripped:
                seen.append(stripped)
    return out


# ---------------------------------------------------------------------------- figures
def figure_problems(fig) -> list[str]:
    """Overlapping labels and powers-of-ten log ticks in matplotlib figure ``fig``."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    texts = []
    if getattr(fig, "_suptitle", None) is not None and fig._suptitle.get_text():
        texts.append(("suptitle", fig._suptitle))
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = ax.get_title() or "axes"
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                texts.append((f"title of {name!r}", title))
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not ax.axison or not axis.get_visible():  # ax.axis("off"): nothing of it is drawn
                continue
            label = axis.get_label()
            if label.get_text() and label.get_visible():
                texts.append((f"{which} label of {name!r}", label))
            low, high = sorted(axis.get_view_interval())
            ticks = [t for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
                     if low <= loc <= high and t.get_visible() and t.get_text()]  # only the drawn ones
            if getattr(ax, f"get_{which}scale")() == "log":
                if any("10^" in t.get_text() or "times10" in t.get_text() for t in ticks):
                    problems.append(f"{name!r}: the log {which} axis prints powers of ten "
                                    "(use gl.viz.plain_log_axis)")
            texts += [(f"{which} tick {t.get_text()!r} of {name!r}", t) for t in ticks]
        texts += [(f"text {t.get_text()!r} in {name!r}", t) for t in ax.texts if t.get_visible() and t.get_text()]
        legend = ax.get_legend()
        if legend is not None:
            texts += [(f"legend {t.get_text()!r} of {name!r}", t) for t in legend.get_texts()]
    boxes = []
    for label, artist in texts:
        try:
            box = artist.get_window_extent(renderer)
        except Exception:  # pragma: no cover - an artist that cannot be measured
            continue
        if box.width > 0 and box.height > 0:
            boxes.append((label, box.expanded(0.98, 0.9)))
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b):
                problems.append(f"{a} overlaps {b}")
    return problems


def _audit_open_figures() -> None:
    import matplotlib.pyplot as plt

    for num in plt.get_fignums():
        fig = plt.figure(num)
        for problem in figure_problems(fig):
            title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
            print(f"figure audit{(' (' + title + ')') if title else ''}: {problem}", file=sys.stderr)


def install_figure_audit() -> bool:
    """Audit every figure after each cell of this IPython kernel (before it is shown and closed)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    if ip is None:
        return False
    callbacks = ip.events.callbacks["post_execute"]
    if _audit_open_figures not in callbacks:
        callbacks.insert(0, _audit_open_figures)  # before the inline backend shows and closes them
    return True


# ---------------------------------------------------------------------------- claims
@dataclass
class ClaimCall:
    """A ``gl.claim(…)`` call as written in a notebook."""

    notebook: str
    cell: int
    text: str
    shown_from: str
    holds_source: str | None          # the lambda's source, when holds is a lambda
    recorded: dict | None             # {name: "chapter/metric"}

    def evaluate(self, values: dict[str, float]) -> bool:
        """Evaluate the claim's lambda on ``values`` (e.g. the recorded figures)."""
        if self.holds_source is None:
            raise ValueError(f"{self.notebook} cell {self.cell}: holds must be a lambda to check records")
        fn = eval(self.holds_source, {"__builtins__": {"abs": abs, "min": min, "max": max, "all": all,
                                                          "any": any, "len": len}})
        return bool(fn(**values))


def notebook_claims(path: str | Path) -> list[ClaimCall]:
    """Every ``gl.claim(…)`` (or ``claim(…)``) call in the code cells of notebook ``path``."""
    path = Path(path)
    calls = []
    for i, cell in _code_cells(path):
        source = _source(cell)
        try:
            tree = ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name != "claim" or len(node.args) < 2:
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            text = ast.get_source_segment(source, node.args[0]) or ""
            holds = node.args[1]
            shown = kw.get("shown_from")
            recorded = kw.get("recorded")
            calls.append(ClaimCall(
                path.name, i, text,
                ast.literal_eval(shown) if shown is not None else "smoke",
                ast.get_source_segment(source, holds) if isinstance(holds, ast.Lambda) else None,
                ast.literal_eval(recorded) if recorded is not None else None))
    return calls
