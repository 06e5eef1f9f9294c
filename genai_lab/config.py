"""Profiles, device choice, seeding: the one set-up call every notebook makes.

A *profile* says how big every experiment is allowed to be:

- ``smoke``: continuous integration; each notebook finishes within 3 minutes on 2 CPU cores.
  Default whenever the ``CI`` environment variable is set.
- ``cpu``: a learner's laptop; minutes per notebook, clearly better results. Default otherwise.
- ``gpu``: full scale, real pretrained hub models when reachable. Default when CUDA is present.

``GENAI_LAB_PROFILE`` overrides the choice.  Chapters read sizes from ``cfg.pick(smoke=..,
cpu=.., gpu=..)`` so that one notebook serves all three.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES = ("smoke", "cpu", "gpu")

#: Repository root (the folder holding ``genai_lab/``, ``book/`` and ``data/``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def in_checkout() -> bool:
    """Whether the package runs from a clone of the repository (``book/`` and ``pyproject.toml``
    beside ``genai_lab/``) rather than from an installed copy in site-packages."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "book").is_dir()


def cache_dir() -> Path:
    """Folder for downloaded data, converted models and checkpoints.

    ``$GENAI_LAB_DATA`` when set; else ``data/cache/`` inside a checkout (git-ignored); else, for an
    installed package (Colab, Kaggle, ``pip install``), the user's cache folder from platformdirs
    (``~/.cache/genai-lab`` on Linux), so nothing is ever written inside site-packages.
    """
    root = os.environ.get("GENAI_LAB_DATA")
    if root:
        path = Path(root).expanduser()
    elif in_checkout():
        path = REPO_ROOT / "data" / "cache"
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("genai-lab", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(_data_dir_problem(path, exc)) from None
    return path


def _data_dir_problem(path: Path, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if os.environ.get("GENAI_LAB_DATA"):
        return (f"GENAI_LAB_DATA={os.environ['GENAI_LAB_DATA']!r} is not a writable folder ({reason}): "
                "set GENAI_LAB_DATA to a folder you can write, or unset it to use data/cache")
    return f"the data cache {str(path)!r} is not a writable folder ({reason}): set GENAI_LAB_DATA to one that is"


def check_data_dir() -> Path:
    """:func:`cache_dir`, checked to be a folder this process can write (a file is created and removed).

    Raises:
        ValueError: one line naming ``GENAI_LAB_DATA`` and the reason (read-only, a file, …).
    """
    import tempfile

    path = cache_dir()
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(_data_dir_problem(path, exc)) from None
    return path


def shared_dir() -> Path:
    """The offline mirror ``../shared`` next to the repository (may not exist)."""
    return Path(os.environ.get("GENAI_LAB_SHARED", REPO_ROOT.parent / "shared"))  # used only where it exists


def say(message: str) -> None:
    """One line of information for a person ("loaded cached …").

    Inside a notebook kernel it goes to stdout, so the page shows it as ordinary output (stderr
    there reads as a warning); everywhere else to stderr, so a command's stdout stays pure
    (``bench --json | jq``).
    """
    import sys

    try:
        from IPython import get_ipython

        in_kernel = type(get_ipython()).__name__ == "ZMQInteractiveShell"
    except ImportError:  # pragma: no cover
        in_kernel = False
    print(message, file=sys.stdout if in_kernel else sys.stderr, flush=True)


def show_progress() -> bool:
    """Whether long loops show a progress bar: yes for a learner running live; the book build
    sets ``GENAI_LAB_PROGRESS=0`` so that no bar is saved into the published pages."""
    return os.environ.get("GENAI_LAB_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a hard requirement in practice
        return False


def default_profile() -> str:
    """The profile in force: ``$GENAI_LAB_PROFILE``, else smoke under CI, gpu with CUDA, else cpu."""
    env = os.environ.get("GENAI_LAB_PROFILE", "").strip().lower()
    if env:
        if env not in PROFILES:
            raise ValueError(f"GENAI_LAB_PROFILE={env!r} is not one of {PROFILES}")
        return env
    if os.environ.get("CI"):
        return "smoke"
    return "gpu" if _cuda_available() else "cpu"


def pick_device(prefer: str | None = None) -> "Any":
    """Return the best ``torch.device``: cuda > mps > cpu, or ``prefer`` if given.

    ``$GENAI_LAB_DEVICE`` overrides the automatic choice (e.g. ``cpu`` on a GPU machine).
    On Apple silicon (``mps``) an operation the Metal backend lacks falls back to the CPU
    (``PYTORCH_ENABLE_MPS_FALLBACK=1``, set when ``genai_lab`` is imported before torch).
    """
    import torch

    source = "device" if prefer else "GENAI_LAB_DEVICE"
    name = prefer or os.environ.get("GENAI_LAB_DEVICE")
    if name:
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(f"{source}={name!r} is not a torch device (try 'cpu', 'cuda', 'cuda:1' or 'mps')") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{source}={name!r} but this machine has no CUDA GPU: use 'cpu'")
        mps = getattr(torch.backends, "mps", None)
        if dev.type == "mps" and not (mps is not None and mps.is_available()):
            raise ValueError(f"{source}={name!r} but Apple's Metal backend is not available here: use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that runs repeat."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    import torch

    torch.manual_seed(seed)


def quiet_libraries() -> None:
    """Silence the chatter of transformers, diffusers and friends (errors still show)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("transformers", "diffusers", "huggingface_hub", "sentence_transformers",
                 "peft", "accelerate", "urllib3", "filelock", "matplotlib.font_manager"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except Exception:
        pass
    try:
        import diffusers

        diffusers.utils.logging.set_verbosity_error()
    except Exception:
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def configure_matplotlib() -> None:
    """Readable default figures, and a Japanese-capable fallback font when one is installed."""
    try:
        import matplotlib
        from matplotlib import font_manager
    except ImportError:  # pragma: no cover
        return
    matplotlib.rcParams["figure.dpi"] = 100
    matplotlib.rcParams["axes.grid"] = False
    cjk = [name for name in ("IPAexGothic", "IPAGothic", "IPAPGothic", "Noto Sans CJK JP", "Hiragino Sans",
                             "Yu Gothic", "MS Gothic")
           if any(f.name == name for f in font_manager.fontManager.ttflist)]
    if cjk:
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", *cjk[:1]]


@dataclass
class LabConfig:
    """What :func:`setup` returns: the profile, the device, the seed and helpers to size things.

    >>> cfg = LabConfig(profile="smoke", device="cpu", seed=0)
    >>> cfg.pick(smoke=100, cpu=1000, gpu=10000)
    100
    """

    profile: str
    device: Any
    seed: int = 0
    threads: int = 1
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")

    def pick(self, *, smoke: Any, cpu: Any, gpu: Any = None) -> Any:
        """Choose a value by profile; ``gpu`` falls back to ``cpu`` when omitted."""
        if self.profile == "smoke":
            return smoke
        if self.profile == "cpu":
            return cpu
        return cpu if gpu is None else gpu

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    @property
    def on_gpu(self) -> bool:
        return getattr(self.device, "type", str(self.device)) == "cuda"

    def __repr__(self) -> str:  # one readable line at the top of every notebook
        return (f"LabConfig(profile={self.profile!r}, device={str(self.device)!r}, "
                f"seed={self.seed}, threads={self.threads})")


_CURRENT: LabConfig | None = None


def setup(profile: str | None = None, *, seed: int = 0, device: str | None = None,
          threads: int | None = None, quiet: bool = True, verbose: bool = True) -> LabConfig:
    """Prepare a notebook or script: profile, device, seeds, threads, quiet libraries.

    Args:
        profile: ``"smoke"``, ``"cpu"`` or ``"gpu"``; ``None`` uses :func:`default_profile`.
        seed: seeds Python, NumPy and torch.
        device: force a device (``"cpu"``, ``"cuda"``…); ``None`` picks cuda > mps > cpu.
        threads: torch CPU threads; ``None`` uses ``$GENAI_LAB_THREADS`` or all cores.
        quiet: silence library logging and progress chatter.
        verbose: print the one-line summary.

    Returns:
        A :class:`LabConfig` with ``profile``, ``device``, ``seed`` and ``pick()``.
    """
    global _CURRENT
    import torch

    chosen = default_profile() if profile is None else str(profile).strip().lower()
    if chosen not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if threads is None:
        env_threads = os.environ.get("GENAI_LAB_THREADS")
        threads = int(env_threads) if env_threads else (os.cpu_count() or 1)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    torch.set_num_threads(threads)
    if quiet:
        quiet_libraries()
    configure_matplotlib()
    if os.environ.get("GENAI_LAB_AUDIT_FIGURES", "").strip().lower() in ("1", "true", "yes"):
        from .audit import install_figure_audit

        install_figure_audit()
    seed_everything(seed)
    from .launch import warn_if_restart_needed

    warn_if_restart_needed()
    dev = pick_device(device)
    if chosen == "gpu" and dev.type == "cpu":
        logging.getLogger("genai_lab").warning("profile 'gpu' on a machine without a GPU: "
                                               "expect long run times")
    cfg = LabConfig(profile=chosen, device=dev, seed=seed, threads=threads)
    _CURRENT = cfg
    if verbose:
        print(cfg)
    return cfg


def current() -> LabConfig:
    """The config of the last :func:`setup` call (set up with defaults if none was made)."""
    return _CURRENT if _CURRENT is not None else setup(verbose=False)
