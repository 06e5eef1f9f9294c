"""Dataset registry: named datasets, hash-checked files, offline-aware sources.

Every file a chapter reads is registered here with its sha256.  Sources are tried in order:

1. the cache (``$GENAI_LAB_DATA`` or the git-ignored ``data/cache/``),
2. the offline mirror ``../shared/data`` next to the repository,
3. system paths (Debian's ``dataset-fashion-mnist`` package),
4. the canonical download URL, when the network answers.

A file whose hash does not match is never used: a bad cache copy is deleted and fetched again;
a bad mirror or system copy is skipped with a warning that names it.  When no source works the
error says exactly what to install or where to put the file.

>>> from genai_lab import data
>>> digits = data.load_digits()          # sklearn's 8x8 digits, no file needed
>>> digits.train_x.shape[1:]
torch.Size([1, 8, 8])
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from .config import cache_dir, shared_dir

log = logging.getLogger("genai_lab.data")


class DataUnavailableError(FileNotFoundError):
    """No valid copy of a registered file could be found or fetched; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    """One registered file.

    Attributes:
        relpath: path under the cache (and under ``../shared/data`` for the mirror).
        sha256: hash of the content; of the *decompressed* bytes when ``hash_of == "gunzip"``
            (Debian re-compresses Fashion-MNIST, so only the content is comparable).
        url: canonical download address, or ``None``.
        system_paths: absolute paths where an OS package installs the file.
        hash_of: ``"raw"`` or ``"gunzip"``.
        hint: one sentence on how to obtain the file offline.
    """

    relpath: str
    sha256: str
    url: str | None = None
    system_paths: tuple[str, ...] = ()
    hash_of: str = "raw"
    hint: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    license: str
    files: tuple[DataFile, ...] = field(default_factory=tuple)
    builtin: str | None = None  # a package that ships the data (no files to fetch)


_FMNIST_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FMNIST_HINT = ("offline: run `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or copy the "
                "four Fashion-MNIST .gz files into {cache}/fashion_mnist/")


def _fmnist(name: str, sha: str) -> DataFile:
    return DataFile(relpath=f"fashion_mnist/{name}", sha256=sha, url=_FMNIST_BASE + name,
                    system_paths=(f"/usr/share/datasets/fashion-mnist/{name}",),
                    hash_of="gunzip", hint=_FMNIST_HINT)


REGISTRY: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", "1,797 handwritten digits, 8x8 grey levels, 10 classes (UCI, via scikit-learn)",
        "CC BY 4.0", builtin="scikit-learn"),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "70,000 Zalando article images, 28x28 grey, 10 classes", "MIT",
        files=(
            _fmnist("train-images-idx3-ubyte.gz",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            _fmnist("train-labels-idx1-ubyte.gz",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            _fmnist("t10k-images-idx3-ubyte.gz",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            _fmnist("t10k-labels-idx1-ubyte.gz",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        )),
    "tiny_shakespeare": DatasetInfo(
        "tiny_shakespeare", "1.1 MB of Shakespeare's plays as plain text (char-rnn)", "public domain",
        files=(DataFile(
            relpath="tinyshakespeare/input.txt",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            hint="offline: copy input.txt (sha256 86c4e6aa…) to {cache}/tinyshakespeare/input.txt"),)),
}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# --------------------------------------------------------------------------- files
def file_sha256(path: str | Path, hash_of: str = "raw") -> str:
    """sha256 of a file's bytes, or of its decompressed bytes when ``hash_of == "gunzip"``."""
    if hash_of not in ("raw", "gunzip"):
        raise ValueError(f"hash_of must be 'raw' or 'gunzip', got {hash_of!r}")
    digest = hashlib.sha256()
    opener = gzip.open if hash_of == "gunzip" else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid(path: Path, entry: DataFile) -> bool:
    try:
        return file_sha256(path, entry.hash_of) == entry.sha256
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


def network_allowed() -> bool:
    """False when the user asked for offline mode (``GENAI_LAB_OFFLINE`` or ``HF_HUB_OFFLINE``)."""
    for var in ("GENAI_LAB_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    return True


def _download(url: str, dest: Path, timeout: float = 20.0) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - registered URLs only
        total = int(resp.headers.get("Content-Length") or 0) or None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=dest.name, leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _candidates(entry: DataFile) -> list[tuple[str, Path]]:
    cands = [("cache", cache_dir() / entry.relpath),
             ("shared mirror", shared_dir() / "data" / entry.relpath)]
    cands += [("system", Path(p)) for p in entry.system_paths]
    return cands


def locate_file(entry: DataFile, verify: bool = True) -> tuple[str, Path] | None:
    """Where a valid copy of ``entry`` is now, as ``(source, path)``, or ``None``. Never downloads."""
    for source, path in _candidates(entry):
        if path.is_file() and (not verify or _valid(path, entry)):
            return source, path
    return None


def fetch_file(entry: DataFile, *, allow_download: bool | None = None) -> Path:
    """Return a path to a hash-verified copy of ``entry``, downloading into the cache if needed.

    Raises:
        DataUnavailableError: no valid copy and no way to download one; the message says what to do.
    """
    if not isinstance(entry, DataFile):
        raise TypeError(f"entry must be a DataFile, got {type(entry).__name__}")
    rejected: list[str] = []
    for source, path in _candidates(entry):
        if not path.is_file():
            continue
        if _valid(path, entry):
            return path
        rejected.append(f"{path} ({source})")
        if source == "cache":
            log.warning("removing %s: its sha256 does not match the registry", path)
            path.unlink()
        else:
            log.warning("ignoring %s: its sha256 does not match the registry", path)
    if allow_download is None:
        allow_download = network_allowed()
    dest = cache_dir() / entry.relpath
    reason = "offline mode is on (GENAI_LAB_OFFLINE/HF_HUB_OFFLINE)"
    if entry.url and allow_download:
        try:
            _download(entry.url, dest)
            if _valid(dest, entry):
                return dest
            dest.unlink()
            reason = f"the download from {entry.url} failed its sha256 check"
        except OSError as exc:
            reason = f"could not download {entry.url} ({exc.__class__.__name__}: {exc})"
    elif not entry.url:
        reason = "it has no download address"
    bad = f" Copies with a wrong hash were ignored: {', '.join(rejected)}." if rejected else ""
    hint = entry.hint.format(cache=cache_dir())
    raise DataUnavailableError(
        f"{entry.relpath} is not available: {reason}.{bad} To fix: {hint or 'connect to the internet'}.")


def dataset_sources(name: str) -> dict[str, str]:
    """For ``info``: each file of dataset ``name`` → where a valid copy is (or 'missing')."""
    info = _info(name)
    if info.builtin:
        return {"(built in)": f"package {info.builtin}"}
    out = {}
    for entry in info.files:
        found = locate_file(entry)
        out[entry.relpath] = f"{found[0]}: {found[1]}" if found else (
            "download on first use" if entry.url and network_allowed() else "missing")
    return out


def _info(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise ValueError(f"name must be one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


# --------------------------------------------------------------------------- datasets
class ImageData(NamedTuple):
    """An image classification dataset as tensors.

    ``train_x``/``test_x``: float32 ``(N, 1, H, W)`` in ``[0, 1]``; ``train_y``/``test_y``: int64
    ``(N,)``; ``classes``: the class names.
    """

    train_x: "torch.Tensor"  # noqa: F821
    train_y: "torch.Tensor"  # noqa: F821
    test_x: "torch.Tensor"  # noqa: F821
    test_y: "torch.Tensor"  # noqa: F821
    classes: tuple[str, ...]


def _check_limit(value, name):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _take(x, y, limit, seed):
    """A class-balanced-in-expectation random subset of ``limit`` rows (deterministic)."""
    import torch

    if limit is None or limit >= len(y):
        return x, y
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)[:limit]
    return x[idx], y[idx]


def load_digits(test_fraction: float = 0.25, *, seed: int = 0) -> ImageData:
    """sklearn's 8x8 digits as tensors, split stratified into train and test.

    Returns an :class:`ImageData` with images ``(N, 1, 8, 8)`` scaled to ``[0, 1]``.
    """
    import numpy as np
    import torch
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = _sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return ImageData(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                     torch.from_numpy(yte), tuple(str(i) for i in range(10)))


def _read_idx(path: Path):
    import numpy as np

    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_fashion_mnist(train_limit: int | None = None, test_limit: int | None = None, *,
                       seed: int = 0) -> ImageData:
    """Fashion-MNIST (60k train / 10k test, 28x28) as tensors, optionally a random subset.

    Args:
        train_limit, test_limit: keep this many random examples (``None`` keeps all).
        seed: which subset.
    """
    import torch

    _check_limit(train_limit, "train_limit")
    _check_limit(test_limit, "test_limit")
    paths = [fetch_file(f) for f in REGISTRY["fashion_mnist"].files]
    arrays = [_read_idx(p) for p in paths]
    tx = torch.from_numpy(arrays[0].copy()).float().div_(255).unsqueeze(1)
    ty = torch.from_numpy(arrays[1].astype("int64"))
    vx = torch.from_numpy(arrays[2].copy()).float().div_(255).unsqueeze(1)
    vy = torch.from_numpy(arrays[3].astype("int64"))
    tx, ty = _take(tx, ty, train_limit, seed)
    vx, vy = _take(vx, vy, test_limit, seed + 1)
    return ImageData(tx, ty, vx, vy, FASHION_CLASSES)


def load_tiny_shakespeare() -> str:
    """The Tiny Shakespeare corpus (1,115,394 characters) as one string."""
    path = fetch_file(REGISTRY["tiny_shakespeare"].files[0])
    return path.read_text(encoding="utf-8")


def train_val_split(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """Split a corpus into its first ``train_fraction`` and the rest (no shuffling, no leakage)."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]


_LOADERS: dict[str, Callable] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "tiny_shakespeare": load_tiny_shakespeare,
}


def load_dataset(name: str, **kwargs):
    """Load a registered dataset by name (see ``REGISTRY``)."""
    _info(name)
    return _LOADERS[name](**kwargs)


def load_images(name: str, cfg=None, **kwargs) -> ImageData:
    """The profile's image dataset: ``digits`` stays whole; ``fashion_mnist`` is subset by profile
    unless ``train_limit``/``test_limit`` are given (smoke 6k/2k, cpu 60k/10k)."""
    if name == "digits":
        return load_digits(**kwargs)
    if name == "fashion_mnist":
        if cfg is not None and "train_limit" not in kwargs:
            kwargs["train_limit"] = cfg.pick(smoke=6000, cpu=None, gpu=None)
            kwargs.setdefault("test_limit", cfg.pick(smoke=2000, cpu=None, gpu=None))
        return load_fashion_mnist(**kwargs)
    raise ValueError(f"name must be 'digits' or 'fashion_mnist', got {name!r}")


def copy_into_cache(name: str, src: str | Path) -> Path:
    """Put a file you obtained yourself into the cache after checking its hash.

    ``name`` is the registered relpath (e.g. ``"tinyshakespeare/input.txt"``).
    """
    entries = {f.relpath: f for info in REGISTRY.values() for f in info.files}
    if name not in entries:
        raise ValueError(f"name must be one of {sorted(entries)}, got {name!r}")
    entry, src = entries[name], Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"src {src} does not exist")
    if not _valid(src, entry):
        raise ValueError(f"src {src} does not match the registered sha256 of {name}")
    dest = cache_dir() / entry.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
