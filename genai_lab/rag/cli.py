"""``python -m genai_lab rag index PATH... | ask "QUESTION"``: the toolkit from the shell.

``index`` reads every ``.md``/``.txt``/``.rst``/``.ipynb`` under the paths, chunks, embeds and
stores them (default: the in-memory store saved under ``<cache>/rag/index``; ``--store pgvector``
uses a local PostgreSQL under ``<cache>/rag/pgdata`` or the server at ``--db DSN``).  Running it
again only re-embeds changed files and drops deleted ones.  ``ask`` opens the same index in a new
process, retrieves and answers with SmolLM2 (``--no-generate`` to skip the model); ``--json``
prints the retrieved chunks (source path, chunk number, score, text) and the answer.

Reliability: files that are not UTF-8 text are skipped and named; Ctrl-C during ``index`` keeps
every finished file (the next run continues) and ends with one line and exit code 130; errors
(a bad ``GENAI_LAB_DATA``, ``--db`` or ``GENAI_LAB_THREADS``, a database that stops) end with one
``error:`` line and exit code 2; ``--k`` is capped at :data:`MAX_K` and the prompt at the model's
context; ``--json`` prints only JSON on stdout (notes and progress go to stderr).
"""

from __future__ import annotations

import json
import sqlite3
import sys

from ..config import show_progress

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for "ended by Ctrl-C"
#: Most chunks ``ask --k`` retrieves (pgvector's HNSW returns at most 1000; the model reads far fewer).
MAX_K = 1000


def _prepare() -> None:
    """What every sub-command needs first: a writable data cache and ``$GENAI_LAB_THREADS`` threads."""
    import os

    from ..config import check_data_dir

    check_data_dir()
    raw = os.environ.get("GENAI_LAB_THREADS", "").strip()
    if raw:
        try:
            threads = int(raw)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"GENAI_LAB_THREADS={raw!r} must be a positive int (CPU threads for the models)")
        import torch

        torch.set_num_threads(threads)


def _open(args, **kwargs):
    from ..config import quiet_libraries
    from .index import open_index

    quiet_libraries()

    return open_index(args.store, db=args.db, path=args.path, **kwargs)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _report_dict(report, total: int | None) -> dict:
    return {"added": report.added, "updated": report.updated, "deleted": report.deleted,
            "unchanged": len(report.unchanged), "chunks_embedded": report.embedded,
            "chunks_written": report.chunks, "chunks_total": total,
            "skipped": [{"source": p, "reason": why} for p, why in report.skipped],
            "pending": len(report.pending), "threads": _threads(), "seconds": round(report.seconds, 2)}


def _say_skipped(skipped) -> None:
    if skipped:
        shown = "; ".join(why for _, why in skipped[:3]) + ("; …" if len(skipped) > 3 else "")
        print(f"skipped {len(skipped)} file(s) that are not UTF-8 text: {shown}", file=sys.stderr)


def cmd_index(args) -> int:
    from .corpus import load_corpus
    from .index import IndexingInterrupted
    from .pgvector_store import StoreUnavailableError

    index = None
    try:
        _prepare()
        skipped: list[tuple[str, str]] = []
        docs = load_corpus(args.paths, skipped=skipped)  # read once, before any model loads
        index = _open(args, strategy=args.strategy, chunk_size=args.chunk_size, overlap=args.overlap)
        report = index.update(args.paths, progress=not args.json and show_progress(), documents=docs, skipped=skipped)
        total = index.count()
    except IndexingInterrupted as exc:
        report = exc.report
        done = len(report.added) + len(report.updated)
        if args.json:
            print(json.dumps({**_report_dict(report, None), "interrupted": True}, indent=1))
        print(f"interrupted: {done} of {done + len(report.pending)} files indexed and kept ({report.chunks} chunks); "
              "run the same command again to index the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted: every file finished before this is kept; run the same command again to finish",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StoreUnavailableError, ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # a store folder or cache that cannot be written
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''} (check GENAI_LAB_DATA and --path)")
    except sqlite3.Error as exc:
        return _fail(f"the embedding cache under GENAI_LAB_DATA cannot be used: {exc}")
    finally:
        if index is not None:
            index.close()
    _say_skipped(report.skipped)
    if args.json:
        print(json.dumps(_report_dict(report, total), indent=1))
    else:
        print(f"indexed {len(report.added)} new, {len(report.updated)} changed, {len(report.deleted)} deleted, "
              f"{len(report.unchanged)} unchanged files; {report.chunks} chunks written ({report.embedded} "
              f"embedded, the rest cached), {total} in the {args.store} store ({report.seconds:.1f} s)")
    return 0


def cmd_ask(args) -> int:
    from .generate import answer_question
    from .pgvector_store import StoreUnavailableError

    if args.k < 1:
        return _fail(f"--k must be a positive int, got {args.k}")
    if not -1.0 <= args.min_similarity <= 1.0:  # also refuses nan
        return _fail(f"--min-similarity must be a cosine in [-1, 1], got {args.min_similarity}")
    k = args.k
    if k > MAX_K:
        print(f"note: --k {k} is more than {MAX_K}; retrieving {MAX_K} chunks (the model reads only the best "
              "that fit its context anyway)", file=sys.stderr)
        k = MAX_K
    index = None
    try:
        _prepare()
        index = _open(args)
        if index.count() == 0:
            return _fail(f"the {args.store} index is empty: run `python -m genai_lab rag index PATH...` "
                         f"first (with the same --store/--db)")
        tok = model = None
        if not args.no_generate:
            from ..models import load_smollm2

            tok, model = load_smollm2()
        answer = answer_question(index, args.question, tok, model, k=k, mode=args.mode,
                                 min_similarity=args.min_similarity, guard=not args.no_guard)
    except KeyboardInterrupt:
        print("interrupted: no answer; the index is unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StoreUnavailableError, ValueError, TypeError, FileNotFoundError) as exc:
        return _fail(str(exc))
    finally:
        if index is not None:
            index.close()
    if answer.context_note:
        print(f"note: {answer.context_note}", file=sys.stderr)
    if args.json:
        print(json.dumps({**answer.as_dict(), "k": k}, indent=1, ensure_ascii=False))
        return 0
    for i, hit in enumerate(answer.hits, 1):
        preview = " ".join(hit.chunk.text.split())[:160]
        print(f"[{i}] {hit.chunk.source}#{hit.chunk.index}  score={hit.score:.4f}\n    {preview}")
    for hit in answer.flagged:
        print(f"[dropped: looks like prompt injection] {hit.chunk.source}#{hit.chunk.index}")
    if answer.abstained:
        print(f"\n{answer.text} (best similarity {answer.best_similarity:.2f} < {args.min_similarity})")
    elif answer.text:
        print(f"\n{answer.text}\nCited: {', '.join(answer.cited) or 'no passage'}")
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
