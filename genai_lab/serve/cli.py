"""``python -m genai_lab serve [--model NAME] [--host H] [--port N] [--max-batch-size B] [--rag]``.

Loads the chat model (SmolLM2-135M-Instruct offline by default), prints the URL it serves on
(``--port 0`` picks a free port) and serves until Ctrl-C.  ``--rag`` also serves chapter 9's RAG
pipeline over the scikit-learn dataset descriptions as the model ``genai-lab-rag`` (answers with
citations and their sources; pick it in the chat page).  Each request is logged on stderr with
its status, token counts and latencies.
"""

from __future__ import annotations

import logging
import signal
import sys


def cmd_serve(args) -> int:
    from .app import create_app
    from .errors import Limits
    from .models import load_chat_engine
    from .runner import bind_socket, uvicorn_server

    sock = bind_socket(args.host, args.port)  # fail fast on a busy port, before loading the model
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive int, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    engine = load_chat_engine(args.model, max_batch_size=args.max_batch_size)
    limits = Limits(max_tokens=args.max_tokens, max_prompt_tokens=args.max_prompt_tokens,
                    default_max_tokens=min(128, args.max_tokens))
    rag = None
    if args.rag:
        from .rag_model import sklearn_rag_model

        rag = sklearn_rag_model()
    app = create_app(engine, limits=limits, rag=rag)
    host, port = sock.getsockname()[:2]
    print(f"serving {engine.name} on http://{host}:{port}  (OpenAI base_url http://{host}:{port}/v1, "
          f"chat page http://{host}:{port}/)", flush=True)
    server = uvicorn_server(app, log_level="warning" if args.quiet else "info")
    try:
        server.run(sockets=[sock])
    finally:
        engine.close()
        sock.close()
    # uvicorn re-raises a Ctrl-C it caught once it has shut down, which main() turns into exit
    # status 130; that re-raised signal can be swallowed by asyncio's own Ctrl-C handling (seen
    # under load in CI), and the shutdown still came from Ctrl-C, so say so either way.
    if server.stop_signal == signal.SIGINT:
        raise KeyboardInterrupt
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a chat model with an OpenAI-compatible API and a chat page")
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (default, offline), a folder with a chat model, or a cached hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--max-batch-size", type=int, default=1,
                   help="decode up to this many waiting requests together (default 1: one at a time)")
    p.add_argument("--max-tokens", type=int, default=512, help="the most tokens one answer may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=2048, help="the longest prompt accepted, in tokens")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (torch)")
    p.add_argument("--quiet", action="store_true", help="log warnings only (no line per request)")
    p.add_argument("--rag", action="store_true",
                   help="also serve chapter 9's RAG over the scikit-learn docs as the model 'genai-lab-rag'")
    p.set_defaults(func=cmd_serve)
