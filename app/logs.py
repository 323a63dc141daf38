"""Logging set-up for the service process: JSON lines (default) or plain text, on stderr.

Used as uvicorn's `log_config`, so uvicorn's own loggers write the same format. uvicorn's
access log is off: app/api/middleware.py writes one line per request, with its request id,
once the answer is sent. JSON lines are written by python-json-logger's orjson formatter: 8 µs
a line against 21 µs for its json-module one (tens of thousands of lines a second under load).

Lines are written in bulk (`BufferedStreamHandler`): at most FLUSH_S after they are logged,
at once for a warning or worse (with every line before it, in order), and at exit; so a busy
server makes a few writes a second, not one system call per request (each of which lets the
batcher's thread take the interpreter lock). A process killed with SIGKILL loses at most the
last FLUSH_S of lines. What it saves is small and within the machine's noise
(docs/benchmarks.md#per-request-overhead-issue-15-second-half).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

FLUSH_S = 0.2  # the longest a logged line waits to be written
_MAX_BUFFERED = 512  # lines: a burst is written at once past this many


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes its formatted lines in one write at most every FLUSH_S
    seconds, at once for records at WARNING or above, and when closed (logging.shutdown)."""

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
        if record.levelno >= logging.WARNING or len(self._lines) >= _MAX_BUFFERED:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            lines, self._lines = self._lines, []
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
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
