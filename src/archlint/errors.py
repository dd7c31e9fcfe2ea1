"""The two ways archlint refuses to go on: a bad request, or a target it cannot build.

The kinds a :class:`TargetError` carries are listed, with their causes, in docs/errors.md.
"""

from __future__ import annotations


class UsageError(Exception):
    """The command line or the configuration is wrong (exit code 2)."""


class TargetError(Exception):
    """A target could not be resolved or built (exit code 3).

    ``kind`` is a stable, machine-readable slug (it appears in the JSON report);
    the message is one line naming the cause and what to do.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


def one_line(error: BaseException) -> str:
    """``ExceptionType: first line of its message`` -- for one-line error reports."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


#: Longest message an unanticipated exception contributes to an ``internal`` error.
_INTERNAL_MESSAGE_LIMIT = 300


def internal_error(target: str, error: BaseException) -> TargetError:
    """What archlint did not anticipate, as the target's error (kind ``internal``)."""
    text = one_line(error)
    if len(text) > _INTERNAL_MESSAGE_LIMIT:
        text = text[: _INTERNAL_MESSAGE_LIMIT - 3] + "..."
    return TargetError("internal", f"{target}: internal error, {text}; run with --debug for the traceback")


def timeout_error(target: str, seconds: float) -> TargetError:
    """The target ran past its time limit (kind ``timeout``)."""
    return TargetError(
        "timeout",
        f"{target}: stopped after {seconds:g} s, its time limit; raise it with --timeout "
        f"or `timeout` in [tool.archlint] (0 = no limit)",
    )
