"""``python -m genai_lab rag index PATH... | ask "QUESTION"``: the toolkit from the shell.

``index`` reads every ``.md``/``.txt``/``.rst``/``.ipynb`` under the paths, chunks, embeds and
stores them (default: the in-memory store saved under ``<cache>/rag/index``; ``--store pgvector``
uses a local PostgreSQL under ``<cache>/rag/pgdata`` or the server at ``--db DSN``).  Running it
again only re-embeds changed files and drops deleted ones.  ``ask`` opens the same index in a new
process, retrieves and answers with SmolLM2 (``--no-generate`` to skip the model); ``--json``
prints the retrieved chunks (source path, chunk number, score, text) and the answer.
"""

from __future__ import annotations

import json
import sys

EXIT_ERROR = 2


def _open(args, **kwargs):
    from ..config import quiet_libraries
    from .index import open_index

    quiet_libraries()

    return open_index(args.store, db=args.db, path=args.path, **kwargs)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_index(args) -> int:
    from .corpus import load_corpus
    from .pgvector_store import StoreUnavailableError

    try:  # check the paths before loading any model
        load_corpus(args.paths)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        index = _open(args, strategy=args.strategy, chunk_size=args.chunk_size, overlap=args.overlap)
    except (StoreUnavailableError, ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        report = index.update(args.paths, progress=not args.json)
        total = index.count()
    except (ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    finally:
        index.close()
    if args.json:
        print(json.dumps({"added": report.added, "updated": report.updated, "deleted": report.deleted,
                          "unchanged": len(report.unchanged), "chunks_embedded": report.chunks,
                          "chunks_total": total, "seconds": round(report.seconds, 2)}, indent=1))
    else:
        print(f"indexed {len(report.added)} new, {len(report.updated)} changed, {len(report.deleted)} deleted, "
              f"{len(report.unchanged)} unchanged files; {report.chunks} chunks embedded, {total} in the "
              f"{args.store} store ({report.seconds:.1f} s)")
    return 0


def cmd_ask(args) -> int:
    from .generate import answer_question
    from .pgvector_store import StoreUnavailableError

    if args.k < 1:
        return _fail(f"--k must be a positive int, got {args.k}")
    try:
        index = _open(args)
    except (StoreUnavailableError, ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        if index.count() == 0:
            return _fail(f"the {args.store} index is empty: run `python -m genai_lab rag index PATH...` "
                         f"first (with the same --store/--db)")
        tok = model = None
        if not args.no_generate:
            from ..models import load_smollm2

            tok, model = load_smollm2()
        answer = answer_question(index, args.question, tok, model, k=args.k, mode=args.mode,
                                 min_similarity=args.min_similarity, guard=not args.no_guard)
    except (ValueError, TypeError) as exc:
        return _fail(str(exc))
    finally:
        index.close()
    if args.json:
        print(json.dumps(answer.as_dict(), indent=1, ensure_ascii=False))
        return 0
    for i, hit in enumerate(answer.hits, 1):
        preview = " ".join(hit.chunk.text.split())[:160]
        print(f"[{i}] {hit.chunk.source}#{hit.chunk.index}  score={hit.score:.4f}\n    {preview}")
    for hit in answer.flagged:
        print(f"[dropped: looks like prompt injection] {hit.chunk.source}#{hit.chunk.index}")
    if answer.abstained:
        print(f"\n{answer.text} (best similarity {answer.best_similarity:.2f} < {args.min_similarity})")
    elif answer.text:
        print(f"\n{answer.text}\nSources: {', '.join(answer.citations)}")
    return 0


def add_cli(subparsers) -> None:
    """Add ``rag index`` and ``rag ask`` to the ``python -m genai_lab`` parser."""
    from .chunking import STRATEGIES
    from .index import MODES

    p = subparsers.add_parser("rag", help="retrieval-augmented generation: index a folder, ask questions")
    sub = p.add_subparsers(dest="rag_command", required=True)

    def store_args(sp):
        sp.add_argument("--store", choices=("memory", "pgvector"), default="memory",
                        help="vector store (default: memory, saved under the data cache)")
        sp.add_argument("--db", default=None, help="PostgreSQL DSN with pgvector (default with --store pgvector: "
                                                   "a local server under the data cache)")
        sp.add_argument("--path", default=None, help="folder of the memory store / local server data")
        sp.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("index", help="index .md/.txt/.rst/.ipynb files (re-running only updates what changed)")
    s.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    s.add_argument("--strategy", choices=STRATEGIES, default="heading", help="chunking strategy")
    s.add_argument("--chunk-size", type=int, default=500, help="chunk size in characters")
    s.add_argument("--overlap", type=int, default=100, help="overlap in characters (fixed strategy)")
    store_args(s)
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("ask", help="retrieve and answer a question from the index")
    s.add_argument("question")
    s.add_argument("--k", type=int, default=3, help="chunks to retrieve (default 3)")
    s.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode (default hybrid)")
    s.add_argument("--min-similarity", type=float, default=0.4,
                   help="say \"I don't know\" below this cosine similarity (default 0.4)")
    s.add_argument("--no-generate", action="store_true", help="retrieve only, do not load the LLM")
    s.add_argument("--no-guard", action="store_true", help="keep chunks that look like prompt injection")
    store_args(s)
    s.set_defaults(func=cmd_ask)
