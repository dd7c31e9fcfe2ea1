"""Fetching one config.json from the Hugging Face Hub, within a deadline, every fault named.

One HEAD request asks the Hub first (no retries, ``timeout`` seconds for connecting and
for reading), so its answer decides the kind of error at once:

=====================================  =====================================================
the Hub's answer                       kind
=====================================  =====================================================
401/403 with ``GatedRepo``             ``gated``
404 ``RepoNotFound`` (or 401 without)  ``repo-not-found``
404 ``RevisionNotFound``               ``revision-not-found``
404 ``EntryNotFound``                  ``no-config``
another status (5xx, 429, ...)         ``hub-error`` with the status
no answer within the deadline          ``hub-error`` ("did not answer within N s")
no TCP connection within 3 s, refused  ``offline``
``HF_HUB_OFFLINE`` / ``--offline``     ``offline`` (no request is made)
=====================================  =====================================================

When the Hub cannot be asked or does not answer well, a copy in the local cache is used if
there is one. Only after a good answer is ``hf_hub_download`` called (it caches the file);
it is never left to retry a failing Hub (huggingface_hub's own retries take ~30 s and
print their log on stderr). huggingface_hub's logging and warnings are silenced meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import time

from .errors import TargetError, one_line
from .quiet import quiet_libraries

#: Seconds for all Hub traffic of one target (connect and read), unless ``HF_HUB_ETAG_TIMEOUT``
#: (huggingface_hub's own setting for this request) says otherwise or the target's time
#: limit leaves less.
HUB_TIMEOUT = 30.0


def hub_deadline(target_limit: float | None) -> float:
    """Seconds the Hub may take for one target."""
    limit = HUB_TIMEOUT
    try:
        limit = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_TIMEOUT)
    except ValueError:
        pass
    if limit <= 0:
        limit = HUB_TIMEOUT
    return limit if target_limit is None else max(0.1, min(target_limit, limit))

OFFLINE_ADVICE = (
    "config.json is not in the local Hugging Face cache and the Hub cannot be reached; "
    "connect once to cache it (later runs work with --offline), or lint a local copy: "
    "archlint ./FOLDER (a folder holding config.json)"
)

#: Seconds a TCP connection to the Hub may take to open before the Hub counts as unreachable.
REACH_TIMEOUT = 3.0


def hub_reachable(timeout: float = REACH_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (name
    lookup included), so that an unreachable Hub costs seconds, not the whole deadline."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def check_repo_id(target: str, repo: str) -> None:
    """Refuse what huggingface_hub refuses (``org/..``, ``org--x/m``, ``org/m.``) as kind ``bad-target``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise TargetError(
            "bad-target",
            f"{target}: not a valid Hub id (letters, digits, '-', '_', '.'; no '--' or '..'; "
            f"no '-' or '.' at either end); {_flat(e)}",
        ) from e


#: While a :func:`shared_answers` block runs: the Hub's answers given in it, by (repository,
#: revision, offline) -- a path or a fault.
_answers: dict[tuple[str, str | None, bool], str | TargetError] | None = None


@contextlib.contextmanager
def shared_answers():
    """Within the block, each repository and revision is asked of the Hub once: the result
    cache's look-up and the lint that follows a miss share one answer (and one deadline)."""
    global _answers
    outer, _answers = _answers, {} if _answers is None else _answers
    try:
        yield
    finally:
        _answers = outer


def fetch_config(target: str, repo: str, revision: str | None, *, offline: bool, timeout: float | None) -> str:
    """The local path of ``repo``'s config.json, or a :class:`TargetError` of the right kind
    (inside :func:`shared_answers`, an answer given earlier in the block is given again)."""
    key = (repo, revision or "main", offline)  # no revision: the default branch
    answer = _answers.get(key) if _answers is not None else None
    if answer is None:
        try:
            answer = _fetch_config(repo, repo, revision, offline=offline, timeout=timeout)
        except TargetError as e:
            answer = e
        if _answers is not None:
            _answers[key] = answer
    if isinstance(answer, TargetError):
        message = answer.message.replace(repo, target, 1) if target != repo else answer.message
        raise TargetError(answer.kind, message)
    return answer


def _fetch_config(target: str, repo: str, revision: str | None, *, offline: bool, timeout: float | None) -> str:
    from huggingface_hub import constants

    check_repo_id(target, repo)
    timeout = hub_deadline(timeout)
    start = time.monotonic()
    with quiet_libraries():
        problem = None
        if not offline and not constants.is_offline_mode():
            if hub_reachable(min(REACH_TIMEOUT, timeout)):
                problem = _ask(target, repo, revision, max(0.1, timeout - (time.monotonic() - start)), deadline=timeout)
            else:
                problem = _offline(target)
        left = max(0.1, timeout - (time.monotonic() - start))
        return _download(target, repo, revision, problem, local_only=offline or problem is not None, timeout=left)


def _ask(target: str, repo: str, revision: str | None, timeout: float, *, deadline: float) -> TargetError | None:
    """One HEAD request. Raises what no cached copy can fix (the repository or revision
    does not exist, it is gated); returns the fault a cached copy can stand in for."""
    import httpx2
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, "config.json", revision=revision)
    try:
        get_hf_file_metadata(url, timeout=timeout, retry_on_errors=False)
    except (hub_errors.GatedRepoError, hub_errors.RevisionNotFoundError, hub_errors.RepositoryNotFoundError,
            hub_errors.RemoteEntryNotFoundError) as e:
        raise _refusal(target, repo, revision, e) from e
    except hub_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "an error"
        return TargetError("hub-error", f"{target}: the Hub answered HTTP {status} for config.json; try again later")
    except httpx2.TimeoutException:
        return TargetError("hub-error", f"{target}: the Hub did not answer within {deadline:g} s; try again later, "
                                        "or set HF_HUB_ETAG_TIMEOUT to wait longer")
    except (httpx2.ConnectError, hub_errors.OfflineModeIsEnabled, ConnectionError):
        return _offline(target)
    except (httpx2.HTTPError, OSError) as e:
        return TargetError("hub-error", f"{target}: talking to the Hub failed: {one_line(e)}")
    return None


def _download(target: str, repo: str, revision: str | None, problem: TargetError | None, *,
              local_only: bool, timeout: float) -> str:
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, "config.json", revision=revision, local_files_only=local_only,
                               etag_timeout=timeout)
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as e:
        raise (problem or _offline(target)) from e
    except (hub_errors.GatedRepoError, hub_errors.RevisionNotFoundError, hub_errors.RepositoryNotFoundError,
            hub_errors.EntryNotFoundError, hub_errors.RemoteEntryNotFoundError) as e:
        raise _refusal(target, repo, revision, e) from e
    except hub_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "an error"
        raise TargetError("hub-error",
                          f"{target}: the Hub answered HTTP {status} for config.json; try again later") from e
    except Exception as e:  # httpx2's network errors, OSError from the cache
        raise TargetError("hub-error", f"{target}: could not fetch config.json: {one_line(e)}") from e


def _refusal(target: str, repo: str, revision: str | None, error: Exception) -> TargetError:
    """What no cached copy can fix: the repository is gated, or it, its revision or its
    config.json does not exist."""
    from huggingface_hub import errors as hub_errors

    if isinstance(error, hub_errors.GatedRepoError):  # before RepositoryNotFoundError: a subclass of it
        return TargetError("gated", f"{target}: the repository is gated; accept its licence on the Hub "
                                    "and set HF_TOKEN (or run `hf auth login`)")
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return TargetError("revision-not-found", f"{target}: revision {revision!r} does not exist in {repo}")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        return TargetError("repo-not-found",
                           f"{target}: no such repository on the Hub (or it is private: set HF_TOKEN)")
    return TargetError("no-config", f"{target}: the repository has no config.json; it is not a transformers model")


def _offline(target: str) -> TargetError:
    return TargetError("offline", f"{target}: {OFFLINE_ADVICE}")


def _flat(error: BaseException) -> str:
    return " ".join(str(error).split()).rstrip(".")
