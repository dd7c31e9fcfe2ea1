"""The two ways archlint refuses to go on: a bad request, or a target it cannot build."""

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
