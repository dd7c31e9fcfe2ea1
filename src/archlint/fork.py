"""Work done ahead in a forked child process, on the second core, while the lint goes on.

:func:`fork_worker` forks once; the child runs named jobs in order and sends each value
back as soon as it has it (length-prefixed pickles through a pipe), then exits. The parent
asks :meth:`Worker.result` for a value when it needs it, which blocks until the child has
sent it. A fork shares everything the parent had built (the meta model, its shrunk copy,
the imported libraries) without copying it, so a job is exactly what the parent would
have computed at that point.

A worker is an optimisation, never a source of truth the parent cannot do without: every
failure (the job raised, its value does not pickle, the child died or ran past
:data:`LIMIT`, the pipe broke) makes :meth:`Worker.result` return :data:`MISSING`, and the
caller computes the value itself. The child:

* ignores SIGINT (Ctrl-C reaches the whole process group; the parent stops it instead),
  and is killed by SIGALRM after :data:`LIMIT` seconds (timers are not inherited); the
  parent stops it sooner, after :data:`PATIENCE` seconds without a value;
* writes nothing to the user's terminal (file descriptors 0-2 and ``sys.stdout``/``sys.stderr``
  point at ``/dev/null``), and leaves with ``os._exit``: no atexit handler, no flush of the
  parent's buffers;
* runs torch with one thread (the fork copied no thread pool; its work is fake tensors), and
  its logging handlers write to ``/dev/null`` without touching the stream they had (a lock of
  stderr may have been held by another thread of the parent, a spinner, at the fork); what a
  job captures of the libraries' logs and warnings (the quantization preview's notes) it
  captures as in the parent.

Forking is used only on Linux (macOS does not support fork without exec in processes that
loaded system frameworks), in the main thread, with at least two CPUs to run on, and not
when ``ARCHLINT_WORKER=0``.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds after which the child is killed whatever it is doing.
LIMIT = 300
#: Seconds the parent waits for the child's next value before it stops the child and computes
#: the value itself: the child's jobs take seconds (a fake step of a shrunk copy, a quantizer
#: run on the meta model), so a child silent this long is stuck, not slow.
PATIENCE = 60.0

#: The value of a job the worker could not deliver.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

#: The name of the last frame the child sends: its own CPU seconds.
CPU = "cpu"

#: Seconds the parent waits, when it is done, for the CPU frame of a child that sent every job.
_LAST_FRAME = 1.0

_HEADER = struct.Struct("!Q")


def available() -> bool:
    """Whether this process may fork a worker that runs on another core."""
    if os.environ.get("ARCHLINT_WORKER", "1") == "0" or sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


class Worker:
    """A forked child running named jobs; see the module docstring."""

    def __init__(self, pid: int, fd: int, names: Sequence[str]):
        self.pid = pid
        self.names = tuple(names)  # the jobs it runs, in order
        self._fd = fd
        self._values: dict[str, Any] = {}
        self._received: set[str] = set()  # the jobs whose frame arrived, delivered or not
        self._ended = False
        self.cpu_seconds = 0.0  # the child's own, once it has sent everything

    def result(self, name: str) -> Any:
        """The value the child computed for job ``name``, waiting for it; :data:`MISSING`
        when the child does not deliver it."""
        while name not in self._values and not self._ended:
            self._receive()
        return self._values.get(name, MISSING)

    def close(self) -> None:
        """Stop the child if it still runs and reap it (idempotent). A child that has ended,
        or has sent every job and is about to send its CPU seconds, is read to the end first."""
        if self.pid:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done = self.pid
            if not done and set(self.names) <= self._received and not self._ended:
                if select.select([self._fd], [], [], _LAST_FRAME)[0]:
                    self._receive()  # the CPU frame follows the last job's at once
            if done:
                while not self._ended:
                    self._receive()
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._ended = True

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _receive(self) -> None:
        header = self._read(_HEADER.size)
        body = self._read(_HEADER.unpack(header)[0]) if header else b""
        if not body:
            self._ended = True
            return
        try:
            name, delivered, value = pickle.loads(body)
        except Exception:  # a value that does not unpickle here is not delivered
            return
        if name == CPU:
            self.cpu_seconds = value
            self._ended = True
            return
        self._received.add(name)
        if delivered:
            self._values[name] = value

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            if not select.select([self._fd], [], [], PATIENCE)[0]:
                self.close()  # stuck: stopped, and everything not received is MISSING
                return b""
            chunk = os.read(self._fd, min(left, 1 << 20))
            if not chunk:
                return b""  # the child ended (or died) before sending all of it
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def fork_worker(jobs: Sequence[tuple[str, Callable[[], Any]]]) -> Worker | None:
    """Fork a child running ``jobs`` (``(name, job)``, in order); None when forking is not
    available here or fails."""
    if not jobs or not available():
        return None
    read_fd, write_fd = os.pipe()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 on a process with threads
            pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(jobs, write_fd)
    os.close(write_fd)
    return Worker(pid, read_fd, [name for name, _ in jobs])


def _child(jobs: Sequence[tuple[str, Callable[[], Any]]], fd: int) -> None:
    try:
        start = time.process_time()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(LIMIT)
        devnull = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(devnull, stream)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 -- also where they were replaced
        _handlers_to(sys.stderr)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)
        for name, job in jobs:
            try:
                payload = pickle.dumps((name, True, job()), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # not delivered: the parent computes it itself
                payload = pickle.dumps((name, False, None))
            _send(fd, payload)
        _send(fd, pickle.dumps((CPU, True, time.process_time() - start)))
    finally:
        os._exit(0)


def _handlers_to(stream) -> None:
    """Point every logging stream handler at ``stream`` without flushing its old stream,
    whose lock another thread of the parent (a spinner writing to stderr) may have held at the
    fork. Handlers' own locks are renewed by :mod:`logging` in the child; a handler the job
    adds itself (transformers' messages that archlint reports as notes) works as usual."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = stream


def _send(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]
