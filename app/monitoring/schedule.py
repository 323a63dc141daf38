"""Drift reports on a schedule, off the request path: one background thread per app.

    schedule = DriftSchedule(lambda: monitors_now(), interval_s=60.0)
    schedule.start()          # in the lifespan, once the models are ready
    schedule.stop()           # at shutdown: waits for a report under way (well under a second)

Each tick walks the monitors serving *now*, so a reload needs nothing from the schedule and
leaves no thread behind. A monitor whose window has not changed since its last report is
skipped, so an idle server does no work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from app.monitoring.monitor import ModelMonitor

log = logging.getLogger(__name__)


class DriftSchedule:
    def __init__(self, monitors: Callable[[], Iterable[ModelMonitor]], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._monitors = monitors
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-reports", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> None:
        """One report per monitor whose window changed; a failure is logged, never raised."""
        for monitor in self._monitors():
            try:
                monitor.update_drift()
            except Exception:
                log.exception("drift report of %s:%s failed", monitor.manifest.name, monitor.manifest.version)

    def _run(self) -> None:
        # Not at a lower priority (nice): a starved thread holding the GIL would stall the
        # threads answering requests. At normal priority a report shares the GIL by switches.
        while not self._stopping.wait(self.interval_s):
            self.run_once()
