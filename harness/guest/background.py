"""A guest's QEMU (or vng) running in the background, never left behind.

The long-lived backends start their guest and go on: the process runs
through ``proc.run`` (logged, in its own process group, on a leash: it dies
with the harness even on kill -9) in a daemon thread, and ``kill`` or the
interpreter's exit stops it through proc.run's watchdog.
"""

from __future__ import annotations

import atexit
import threading

from harness import proc


class Background:
    """One background process: ``launch`` it, ask whether it is ``gone``, ``kill`` it."""

    label = "QEMU"  # how gone() names the program

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.done: proc.Completed | None = None
        self.error: BaseException | None = None
        self._stop: str | None = None
        self._thread: threading.Thread | None = None

    def launch(self, name: str, **run_kwargs) -> None:
        """Start ``self.argv`` (``run_kwargs`` go to proc.run: log paths, cwd, env)."""
        self._thread = threading.Thread(target=self._run, args=(run_kwargs,), name=name, daemon=True)
        _LIVE.add(self)
        self._thread.start()

    def _run(self, run_kwargs: dict) -> None:
        try:
            self.done = proc.run(self.argv, check=False, watchdog=lambda: self._stop, leash=True, **run_kwargs)
        except BaseException as exc:  # noqa: BLE001 (reported by gone())
            self.error = exc
        finally:
            _LIVE.discard(self)

    def gone(self) -> str | None:
        """Why the process is no longer running, or None while it runs."""
        if self._thread is None:
            return "not started"
        if self._thread.is_alive():
            return None
        if self.error is not None:
            return f"{self.label} failed: {self.error}"
        rc = self.done.returncode if self.done else None
        return f"the guest stopped ({self.label} exit {rc})" if rc is not None else "the guest was stopped"

    def wait_gone(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.gone() is not None

    def kill(self, reason: str, wait: float = 30.0) -> None:
        """Kill the process group (proc.run's watchdog) and wait for it."""
        self._stop = reason
        self.wait_gone(wait)
        _LIVE.discard(self)


_LIVE: set[Background] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a QEMU behind: it runs in its own process group, beyond a dying interpreter."""
    for job in list(_LIVE):
        job._stop = "the harness is exiting"
    for job in list(_LIVE):
        job.wait_gone(10)
