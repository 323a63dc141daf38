"""Logging set-up for the service process: JSON lines (default) or plain text, on stderr.

Used as uvicorn's `log_config`, so uvicorn's own loggers write the same format. uvicorn's
access log is off: app/api/middleware.py writes one line per request, with its request id,
once the answer is sent. JSON lines are written by python-json-logger's orjson formatter: 8 µs
a line against 21 µs for its json-module one (tens of thousands of lines a second under load).

Access lines are written in bulk (`BufferedStreamHandler`): at most FLUSH_S after they are
logged, and at once, in order, when any other line is logged (every server start-up, shutdown
and warning line is one) and at exit; so a server makes a few writes a second when quiet and
one per PIPE_BUF of lines when busy, not one system call per request (each of which lets
the batcher's thread take the interpreter lock). Each write holds whole lines and at most
PIPE_BUF bytes, so the lines of several workers sharing one pipe never tear into each other.
A process killed with SIGKILL loses at most the last FLUSH_S of access lines. What it saves
is small and within the machine's noise
(docs/benchmarks.md#per-request-overhead-issue-15-second-half).
"""

from __future__ import annotations

import logging
import select
import sys
import threading
from typing import Any, TextIO

FLUSH_S = 0.2  # the longest an access line waits to be written
ACCESS_LOGGER = "app.access"  # app/api/middleware.py's: the only lines held back
_MAX_BUFFERED = 512  # lines: a burst is written at once past this many
# POSIX writes of at most PIPE_BUF bytes to a pipe are atomic: never interleaved with another
# process's. uvicorn's workers share the parent's stderr.
_ATOMIC_BYTES = select.PIPE_BUF


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that holds back the access log's lines and writes them in bulk: at most
    FLUSH_S seconds later, at once with any other record (after them, in order), and when closed
    (logging.shutdown). A uvicorn worker stopped by SIGTERM dies by the re-raised signal
    without running logging.shutdown, but only after logging its shutdown lines, which write
    every access line before them."""

    def __init__(self, stream: TextIO | None = None, flush_s: float = FLUSH_S) -> None:
        """Also stops the process's records from gathering what neither format writes (the
        caller's file and line, thread, process): the Python docs' logging optimisations, a
        stack walk and three lookups less per line. Here because dictConfig builds this handler
        in every process the service runs, uvicorn's workers included."""
        super().__init__(stream)
        logging._srcfile = None  # documented: "Optimization" in the logging HOWTO
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        self._lines: list[str] = []
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(flush_s,), name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)  # under the handler lock, as Handler.handle calls emit
        if record.name != ACCESS_LOGGER or len(self._lines) >= _MAX_BUFFERED:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            lines, self._lines = self._lines, []
            if not lines:
                return
            try:
                for chunk in _chunks(lines):
                    self.stream.write(chunk)
                    self.stream.flush()
            except Exception:  # a closed or broken stream: say so on stderr as logging does, lose nothing else
                self.handleError(logging.makeLogRecord({"msg": "".join(lines)}))

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()

    def _flush_every(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            self.flush()


def _chunks(lines: list[str]) -> list[str]:
    """`lines` joined into writes of whole lines, each of at most _ATOMIC_BYTES bytes (UTF-8)
    unless a single line is longer; in order."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode("utf-8", "replace")) if not line.isascii() else len(line)
        if current and size + length > _ATOMIC_BYTES:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        chunks.append("".join(current))
    return chunks


_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_config(fmt: str, level: str) -> dict[str, Any]:
    """A logging.config.dictConfig dictionary; `fmt` "auto" is text on a terminal, JSON lines otherwise."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    formatter: dict[str, Any] = (
        {"()": "pythonjsonlogger.orjson.OrjsonFormatter", "fmt": _JSON, "rename_fields": {"levelname": "level"}}
        if fmt == "json"
        else {"format": _TEXT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "app.logs.BufferedStreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
