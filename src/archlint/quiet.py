"""Keep libraries' own logging and warnings off stderr while a target is linted.

huggingface_hub logs every retry, transformers warns about config keys it does not know,
bitsandbytes logs missing optional kernels when it is imported: none of it is about the
user's model, and archlint promises one stderr line per failed target. ``--debug`` leaves
them alone.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

#: torch's fake-tensor mode logs every op whose meta kernel raises, with a traceback, before
#: the exception reaches archlint (whose answer it is).
_LOGGERS = ("huggingface_hub", "transformers", "bitsandbytes", "httpx", "httpx2", "httpcore", "accelerate", "peft",
            "torch._subclasses.fake_tensor")


@contextlib.contextmanager
def quiet_libraries(enabled: bool = True):
    """No log records or Python warnings from the libraries archlint drives, inside the block."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
