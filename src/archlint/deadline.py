"""A time limit for one target, from any thread.

``with Deadline(seconds):`` raises :class:`DeadlineExceeded` inside the guarded block once
``seconds`` have passed. Two deliveries, one behaviour:

* In the main thread (the command line), ``signal.setitimer(ITIMER_REAL)`` fires SIGALRM,
  whose handler raises. A signal also interrupts blocking system calls (``time.sleep``,
  a socket read without a timeout), so even a factory stuck in one ends on time.
* In any other thread (``lint()`` called from a worker, a web server, a notebook kernel's
  thread), signals cannot be used; a watchdog thread raises the exception asynchronously
  in the guarded thread (``PyThreadState_SetAsyncExc``). Python runs it at the next
  bytecode, so a build that loops in Python ends on time; a single C call that blocks (a
  socket read, ``time.sleep``) is interrupted only when it returns.

:class:`DeadlineExceeded` derives from ``BaseException`` so that the ``except Exception``
clauses of model code and of transformers do not swallow it; in case something does
(a bare ``except:``), it is raised again every :data:`REPEAT` seconds until the block ends.
Python drops an exception raised inside a weakref callback or ``__del__`` (and prints
"Exception ignored in ..."); such a dropped delivery is kept off stderr and simply repeated.

When the main thread already has its own SIGALRM handler (a test runner's timeout, say),
the watchdog is used there too, so that handler is never replaced.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
import time

#: Seconds a target may take by default: the slowest real config measured (DeepSeek-V3,
#: ~26 s for a full lint on a shared 2-core machine) times more than 20.
DEFAULT_TIMEOUT = 600.0

#: Seconds between repeated deliveries while the guarded block has not ended.
REPEAT = 1.0


class DeadlineExceeded(BaseException):
    """The guarded block ran past its time limit."""

    def __init__(self, seconds: float | None = None):
        super().__init__(f"time limit of {seconds:g} s exceeded" if seconds is not None else "time limit exceeded")
        self.seconds = seconds


class Deadline:
    """``with Deadline(seconds):`` -- ``None`` or ``0`` means no limit."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds if seconds and seconds > 0 else None
        self.start = time.monotonic()
        self._armed = False
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._watchdog: threading.Thread | None = None
        self._wake = threading.Event()
        self._previous_handler = None
        self._uses_signal = False

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a limit."""
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.start))

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    # -- arming -------------------------------------------------------------------------

    def __enter__(self) -> Deadline:
        self.start = time.monotonic()
        if self.seconds is None:
            return self
        self._armed = True
        _drop_unraisable_deadlines()
        if _can_use_signal():
            self._uses_signal = True
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT)
        else:
            self._thread_id = threading.get_ident()
            self._watchdog = threading.Thread(target=self._watch, name="archlint-deadline", daemon=True)
            self._watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self.disarm()

    def disarm(self) -> None:
        """End the limit; safe to call twice, and safe against a last late delivery."""
        while True:
            try:
                self._disarm()
                return
            except DeadlineExceeded:  # delivered between the block's end and this call
                continue

    def _disarm(self) -> None:
        if not self._armed:
            return
        self._armed = False  # from here on, neither delivery raises again
        if self._uses_signal:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, self._previous_handler or signal.SIG_DFL)
            self._uses_signal = False
        else:
            self._wake.set()
            with self._lock:  # the watchdog injects only under this lock, after checking _armed
                _set_async_exc(self._thread_id, None)  # drop a delivery not yet run

    # -- delivery -----------------------------------------------------------------------

    def _on_alarm(self, signum, frame) -> None:
        if self._armed:
            raise DeadlineExceeded(self.seconds)

    def _watch(self) -> None:
        wait = self.seconds
        while not self._wake.wait(wait):
            with self._lock:
                if not self._armed:
                    return
                _set_async_exc(self._thread_id, DeadlineExceeded)
            wait = REPEAT


def _drop_unraisable_deadlines() -> None:
    """Keep a delivery that landed in a weakref callback or ``__del__`` off stderr."""
    previous = sys.unraisablehook
    if getattr(previous, "archlint_deadline_filter", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, DeadlineExceeded) or unraisable.exc_type is DeadlineExceeded:
            return
        previous(unraisable)

    hook.archlint_deadline_filter = True
    sys.unraisablehook = hook


def _can_use_signal() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGALRM)
    return current in (signal.SIG_DFL, signal.SIG_IGN, None)


def _set_async_exc(thread_id: int | None, exc_type: type[BaseException] | None) -> None:
    if thread_id is None:
        return
    exception = ctypes.py_object(exc_type) if exc_type else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exception)
