"""Shared plotting helpers (every figure gets a title and labelled axes) and offline bertviz.

bertviz renders with require.js, d3 and jquery, which it normally loads from CDNs; offline (and in
the static site) that renders nothing.  :func:`bertviz_view` inlines the vendored copies in
``genai_lab/assets/`` so the view works with no network, in JupyterLab and in the built book.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Sequence

ASSETS = Path(__file__).with_name("assets")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(6, 4)):
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plain_log_axis(ax, which: str = "both"):
    """Make the log axes of ``ax`` read as plain numbers (``0.5, 1, 2, 5``), not ``2×10⁰``.

    ``which``: ``"x"``, ``"y"`` or ``"both"`` (only axes whose scale is log are changed).
    Returns ``ax``.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if which not in ("x", "y", "both"):
        raise ValueError(f"which must be 'x', 'y' or 'both', got {which!r}")
    plain = FuncFormatter(lambda value, _pos: f"{value:,.10g}")
    for name in ("x", "y") if which == "both" else (which,):
        axis = getattr(ax, f"{name}axis")
        if getattr(ax, f"get_{name}scale")() != "log":
            continue
        low, high = sorted(getattr(ax, f"get_{name}lim")())
        decades = high / low if low > 0 else 1e9
        # few decades: label 1-2-5 ticks as well, else powers of ten only
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 1e3 else (1.0,)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    return ax


def plot_history(history, ax=None, title: str = "Training loss",
                 eval_names: Sequence[str] | None = None):
    """Training loss per step (light) with a moving average, plus any evaluation curves."""
    import numpy as np

    ax = _axes(ax)
    steps, losses = np.asarray(history.steps), np.asarray(history.losses)
    ax.plot(steps, losses, alpha=0.3, label="train loss (per step)")
    if len(losses) >= 20:
        k = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label=f"train loss ({k}-step mean)")
    for name in (eval_names or history.evals.keys()):
        pts = history.evals.get(name, [])
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=name)
    ax.set(title=title, xlabel="step", ylabel="loss")
    ax.legend()
    return ax


def show_images(images, labels: Sequence[str] | None = None, *, ncols: int = 8,
                title: str | None = None, cmap: str = "gray", size: float = 1.2):
    """A grid of images. ``images``: ``(N, 1, H, W)``, ``(N, H, W)`` or ``(N, 3, H, W)`` in [0, 1]."""
    import numpy as np

    plt = _plt()
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 4 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W), (N, 1, H, W) or (N, 3, H, W), got {arr.shape}")
    if labels is not None and len(labels) != len(arr):
        raise ValueError(f"labels must have one entry per image ({len(arr)}), got {len(labels)}")
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    # room for each row's image titles (8 pt, ~0.18 in a line), so they never run into the row above
    label_lines = max((str(lab).count("\n") + 1 for lab in labels), default=0) if labels is not None else 0
    title_lines = title.count("\n") + 1 if title else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.18 * label_lines) * nrows
                                                    + 0.3 * title_lines + (0.1 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(np.clip(arr[i], 0, 1), cmap=cmap, vmin=0, vmax=1)
            ax.set(xticks=[], yticks=[])  # hidden anyway; without them no invisible tick sits under a title
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap(matrix, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
            *, title: str = "", xlabel: str = "", ylabel: str = "", ax=None, annotate: bool = False,
            cmap: str = "viridis", fmt: str = ".2f"):
    """A labelled heatmap of a 2-D array (attention maps, similarity matrices, confusion matrices)."""
    import numpy as np

    m = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    ax = _axes(ax, figsize=(max(4, 0.5 * m.shape[1] + 2), max(3, 0.45 * m.shape[0] + 1.5)))
    im = ax.imshow(m, cmap=cmap, aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if row_labels is not None:
        ax.set_yticks(range(m.shape[0]), labels=list(row_labels))
    if col_labels is not None:
        ax.set_xticks(range(m.shape[1]), labels=list(col_labels), rotation=45, ha="right")
    if annotate:
        hi = np.nanmax(m) if m.size else 0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > 0.6 * hi else "white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str = "",
              ylabel: str = "", ax=None, horizontal: bool = False):
    """A labelled bar chart (probabilities of top-k tokens, accuracies of methods…)."""
    if len(labels) != len(values):
        raise ValueError(f"labels and values must have the same length, got {len(labels)} and {len(values)}")
    ax = _axes(ax)
    if horizontal:
        ax.barh(list(map(str, labels)), list(values))
        ax.invert_yaxis()
    else:
        ax.bar(list(map(str, labels)), list(values))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


# --------------------------------------------------------------------------- bertviz, offline
def _data_uri(name: str) -> str:
    path = ASSETS / name
    if not path.is_file():
        raise FileNotFoundError(f"vendored asset {path} is missing; reinstall genai_lab")
    return "data:application/javascript;base64," + base64.b64encode(path.read_bytes()).decode()


def make_offline_html(html: str) -> str:
    """Rewrite bertviz's CDN script paths to inline ``data:`` copies of the vendored libraries."""
    d3 = _data_uri("d3.min.js")
    jq = _data_uri("jquery.min.js")
    html = re.sub(r"(['\"])https://cdnjs\.cloudflare\.com/ajax/libs/d3/[^'\"]*?(\1)", rf"\g<1>{d3}\g<2>", html)
    html = re.sub(r"(['\"])https://cdnjs\.cloudflare\.com/ajax/libs/jquery/[^'\"]*?(\1)", rf"\g<1>{jq}\g<2>", html)
    html = re.sub(r"<script[^>]*src=['\"]https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/[^'\"]*['\"][^>]*></script>",
                  "", html)
    # require.js appends no ".js" to data: URIs, so the rewritten paths load as they are.
    require = (ASSETS / "require.js").read_text(encoding="utf-8")
    return f"<script>if (typeof require === 'undefined') {{ {require} }}</script>\n" + html


def bertviz_view(attention, tokens: Sequence[str], *, view: str = "head", layer: int | None = None,
                 heads: Sequence[int] | None = None):
    """Show bertviz's head or model view with no network; returns an ``IPython.display.HTML``.

    Args:
        attention: tuple over layers of tensors ``(1, heads, T, T)`` (``output_attentions=True``
            on a model loaded with ``attn_implementation="eager"``).
        tokens: the ``T`` token strings.
        view: ``"head"`` or ``"model"``.
    """
    from IPython.display import HTML

    if view not in ("head", "model"):
        raise ValueError(f"view must be 'head' or 'model', got {view!r}")
    if not attention or len(attention[0].shape) != 4:
        raise ValueError("attention must be a non-empty tuple of (1, heads, T, T) tensors; load the "
                         "model with attn_implementation='eager' (sdpa returns no attention maps)")
    if attention[0].shape[-1] != len(tokens):
        raise ValueError(f"tokens must have {attention[0].shape[-1]} entries, got {len(tokens)}")
    if view == "head":
        from bertviz import head_view

        out = head_view(attention, list(tokens), layer=layer, heads=heads, html_action="return")
    else:
        from bertviz import model_view

        out = model_view(attention, list(tokens), include_layers=None, include_heads=heads,
                         html_action="return")
    return HTML(make_offline_html(out.data))
