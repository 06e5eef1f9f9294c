"""Run the server: in a background thread (notebooks, tests, benchmarks) or in the foreground (CLI).

::

    with ServerThread(create_app(engine)) as server:      # uvicorn on 127.0.0.1, a free port
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
        ...
    # leaving the block stops the server and waits for its thread

The socket is bound before uvicorn starts (port 0 = a free port chosen by the OS), so the URL is
known at once and two servers never race for a port.
"""

from __future__ import annotations

import socket
import threading
import time


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"port {port} on {host} is not free ({exc.strerror})") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app, **kwargs):
    """A quiet ``uvicorn.Server`` for ``app``: warnings only, no access log, logging left alone.

    The server remembers the signal that stopped it (``stop_signal``: e.g. ``signal.SIGINT`` for
    Ctrl-C, ``None`` if none did), so a command line can exit with the matching status.
    """
    import uvicorn

    class Server(uvicorn.Server):
        stop_signal = None

        def handle_exit(self, sig, frame) -> None:
            if self.stop_signal is None:
                self.stop_signal = sig
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_config=None, log_level=kwargs.pop("log_level", "warning"),
                            access_log=False, timeout_graceful_shutdown=5, **kwargs)
    return Server(config)


class ServerThread:
    """uvicorn serving ``app`` in a daemon thread; a context manager that always stops it."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 30.0):
        self.app, self.start_timeout = app, start_timeout
        self.sock = bind_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # pragma: no cover - reported by start()
            self.error = exc

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start: {self.error!r}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
