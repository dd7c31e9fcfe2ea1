"""The two ways archlint refuses to go on: a bad request, or a target it cannot build.

The kinds a :class:`TargetError` carries are listed, with their causes, in docs/errors.md.
"""

from __future__ import annotations

#: Every ``kind`` a target's error can have, with what it means (docs/errors.md explains each).
KINDS: dict[str, str] = {
    "not-found": "the path does not exist (or is a symbolic link that leads nowhere)",
    "no-config": "the folder or Hub repository has no config.json",
    "unreadable-config": "config.json cannot be read (permissions, not UTF-8)",
    "malformed-config": "config.json is not a JSON object (syntax, nesting deeper than 64, a 4300-digit number)",
    "bad-config": "a config value has the wrong type or sign, or transformers refuses the config",
    "too-large": "a size far beyond any published model (layers, experts, heads, hidden size, their products)",
    "unknown-model-type": "model_type is unknown to the installed transformers and the config ships no code",
    "unknown-target": "a bare word that is not a file, a Hub id or a transformers model type",
    "bad-target": "a Hub id that huggingface_hub refuses (org/.., org--x/model, org/model.)",
    "bad-adapter": "a PEFT adapter target whose adapter_config.json cannot serve as the LoRA plan",
    "remote-code": "the config needs its own code: not trusted, or that code failed to load",
    "gated": "the Hub repository is gated and no accepted token was sent",
    "repo-not-found": "no such Hub repository (or private without a token)",
    "revision-not-found": "no such branch, tag or commit in the Hub repository",
    "hub-error": "the Hub answered an error status (5xx, 429) or did not answer within the deadline",
    "offline": "no connection to the Hub (or HF_HUB_OFFLINE / --offline) and no cached config.json",
    "factory-import": "importing the module of FILE.py:NAME or pkg.module:NAME failed",
    "factory-missing": "the module has no such attribute",
    "factory-not-callable": "the attribute is not a class or function",
    "factory-failed": "the factory raised",
    "factory-not-module": "the factory returned something other than an nn.Module",
    "no-model-class": "transformers has no model class for this config",
    "missing-package": "the model class needs an optional package that is not installed (timm, PIL, natten, ...)",
    "build-failed": "building the model on the meta device failed",
    "allocated": "the build allocated real tensor memory beyond archlint's bound",
    "timeout": "the target ran past its time limit (--timeout, `timeout` in [tool.archlint])",
    "internal": "an exception archlint did not anticipate (a bug: run with --debug and report it)",
}


class UsageError(Exception):
    """The command line or the configuration is wrong (exit code 2)."""


class TargetError(Exception):
    """A target could not be resolved or built (exit code 3).

    ``kind`` is a stable, machine-readable slug (it appears in the JSON report);
    the message is one line naming the cause and what to do.
    """

    def __init__(self, kind: str, message: str):
        message = " ".join(message.splitlines())  # one line, even when a target string holds a newline
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self):  # pickles (a report sent to another process) with both arguments
        return type(self), (self.kind, self.message)

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
