"""The result cache: a target whose inputs have not changed is answered from disk.

A lookup never imports torch or transformers (versions come from package metadata), so
a pre-commit hook over unchanged models costs the Python start-up and a few file reads.

A target's key covers everything its result depends on:

* the environment -- archlint's version and its own source files, the versions of the
  libraries whose behaviour a lint predicts, the installed rule plugins;
* the run -- the selected codes, severity overrides, the current directory (messages
  show paths relative to it) and every lint option that changes a result
  (``archlint.api.RESULT_OPTIONS``);
* the target -- where it points, the per-module-ignores and the plan that apply to it,
  and what it is read from: a ``config.json``'s bytes; for a Hub id the commit the local
  Hugging Face cache resolves its revision to (online, a branch is asked for again); for
  a factory every Python file the build imported from the factory's folder or package
  and the source file of every class in the model (its pragmas live there).

Files are recorded in the entry with their SHA-256 and checked on every lookup; a
factory's files are recorded after its first build. An entry is one JSON file named
after its key, with a format number and a checksum of its body: a corrupt, truncated or
foreign file is ignored (and replaced by the next store), never trusted. Writes go to a
temporary file renamed into place, so concurrent runs never read half an entry.
Only results of targets that were built are stored; a failure is always retried.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from .errors import TargetError
from .hub import fetch_config
from .installed import PREDICTED_LIBRARIES, entry_point_rows, installed_version

FORMAT = 1

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PLUGIN_GROUP = "archlint.rules"


def cache_dir() -> Path:
    """``$ARCHLINT_CACHE_DIR``, else ``archlint`` in the user cache directory:
    ``$XDG_CACHE_HOME`` when set, else ``~/.cache`` (``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows)."""
    if explicit := os.environ.get("ARCHLINT_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "archlint"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "archlint"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "archlint" / "Cache"
    return Path.home() / ".cache" / "archlint"


# -- what every key shares -------------------------------------------------------------


def environment() -> dict[str, Any]:
    """archlint, the libraries and the rule plugins a result was computed with."""
    return {
        "archlint": installed_version("archlint"),
        "archlint_source": _package_fingerprint(),
        "libraries": {name: installed_version(name) for name in PREDICTED_LIBRARIES},
        "plugins": installed_plugins(),
        "python": sys.version_info[:2],
    }


def installed_plugins() -> list[list[str]]:
    """Every ``archlint.rules`` entry point: name, what it points at, its distribution and version."""
    return entry_point_rows(_PLUGIN_GROUP)


def _package_fingerprint() -> str:
    """Size and modification time of every archlint source file: an edited checkout is a new archlint."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- what one target's result is read from ---------------------------------------------


@dataclass
class TargetKey:
    """The key of one target's entry, and the files known (before a build) to feed it."""

    digest: str
    kind: str
    depends: dict[str, str] = field(default_factory=dict)  # absolute path -> sha256


def file_digest(path: str | os.PathLike) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def target_source(where: str, *, trust_remote_code: bool, offline: bool,
                  hub_timeout: float | None = None) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """``(kind, pointer, files)`` for a target before it is built, or None when it cannot be
    cached (a path that does not exist, a Hub id not in the local cache). ``hub_timeout`` is
    the target's time limit, which bounds the Hub's answer here as it does in the lint."""
    from .resolve import local_config_file, target_kind

    kind = target_kind(where)
    if kind == "local":
        path = Path(where).expanduser().resolve()
        config = local_config_file(str(path))
        files = [config]
        if trust_remote_code:  # the config's own code: every Python file beside it
            files += sorted(config.parent.glob("*.py"))
        return kind, {"path": str(path)}, _digests(files)
    if kind == "hub":
        repo, _, revision = where.partition("@")
        found = hub_snapshot(repo, revision or None, offline=offline, timeout=hub_timeout)
        if found is None:
            return None
        commit, config = found
        return kind, {"repo": repo, "commit": commit}, _digests([config])
    if kind == "model_type":
        return kind, {"model_type": where}, {}
    if kind == "factory":
        module, _, name = where.rpartition(":")
        if module.endswith(".py"):
            module = str(Path(module).expanduser().resolve())
        return kind, {"module": module, "name": name}, {}
    return None


def _digests(files: Iterable[Path]) -> dict[str, str]:
    out = {}
    for f in files:
        digest = file_digest(f)
        if digest is not None:
            out[str(Path(f).resolve())] = digest
    return out


def hub_snapshot(repo: str, revision: str | None, *, offline: bool,
                 timeout: float | None = None) -> tuple[str, Path] | None:
    """``(commit, config.json path)`` of ``repo@revision`` in the local Hugging Face cache.

    Online, a branch or tag may have moved: it is asked for again (which refreshes the local
    refs, as the build would). Offline, or for a commit, the cache layout is read directly.
    """
    revision = revision or "main"
    if not offline and not _hub_offline() and not _COMMIT.match(revision):
        # the same bounded, fault-handling request the build makes (and, inside
        # hub.shared_answers, the same answer): never huggingface_hub's own retries
        try:
            path = Path(fetch_config(repo, repo, revision, offline=False, timeout=timeout))
        except TargetError:  # unreachable, gated, missing: the lint itself will say why
            return None
        return (path.parent.name, path) if _COMMIT.match(path.parent.name) else None
    folder = hub_cache() / ("models--" + repo.replace("/", "--"))
    commit = revision
    if not _COMMIT.match(revision):
        try:
            commit = (folder / "refs" / revision).read_text(encoding="utf-8").strip()
        except OSError:
            return None
    config = folder / "snapshots" / commit / "config.json"
    return (commit, config) if config.is_file() else None


def hub_cache() -> Path:
    """huggingface_hub's cache directory, found as huggingface_hub finds it."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _hub_offline() -> bool:
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in names)


def built_sources(where: str, module) -> dict[str, str]:
    """After a factory's build: the Python files it imported from its own folder or package,
    and the source files of the model's classes outside installed libraries, with their digests."""
    import inspect

    root = _factory_root(where)
    files: set[str] = set()
    if root is not None:
        for mod in list(sys.modules.values()):
            file = getattr(mod, "__file__", None)
            if file and file.endswith(".py") and _inside(file, root):
                files.add(str(Path(file).resolve()))
    archlint_root = Path(__file__).resolve().parent
    for cls in {c for m in module.modules() for c in type(m).__mro__}:
        try:
            file = inspect.getsourcefile(cls)
        except TypeError:
            continue
        if file and not _installed(file) and not _inside(file, archlint_root):
            files.add(str(Path(file).resolve()))
    return _digests(Path(f) for f in sorted(files))


def _factory_root(where: str) -> Path | None:
    module, _, _ = where.rpartition(":")
    if module.endswith(".py"):
        return Path(module).expanduser().resolve().parent
    top = sys.modules.get(module.partition(".")[0])
    paths = list(getattr(top, "__path__", []) or [])
    if paths:
        return Path(paths[0]).resolve()
    file = getattr(top, "__file__", None)
    return Path(file).resolve().parent if file else None


def _inside(file: str, root: Path) -> bool:
    try:
        return Path(file).resolve().is_relative_to(root)
    except OSError:
        return False


def _installed(file: str) -> bool:
    parts = Path(file).parts
    return "site-packages" in parts or "dist-packages" in parts or Path(file).resolve().is_relative_to(
        Path(os.__file__).resolve().parent)


# -- the store -------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """A stable JSON text of ``value`` (dataclasses, sets and tuples included), for hashing."""
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **{k: _plain(v) for k, v in asdict(value).items()}}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "pattern") and hasattr(value, "flags"):  # a compiled regex
        return value.pattern
    return str(value)


@dataclass(frozen=True)
class StoredCatalogue:
    names: tuple[tuple[str, str], ...]  # (code, name) of every rule
    info: dict[str, Any]  # code -> archlint.report.RuleInfo
    plugin_problems: tuple[str, ...] = ()  # why each broken plugin was skipped


@dataclass
class CacheInfo:
    directory: Path
    entries: int
    bytes: int


class ResultCache:
    """Per-target lint results under ``directory`` (default: :func:`cache_dir`)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir()
        self._environment: str | None = None

    # keys

    @property
    def environment_digest(self) -> str:
        if self._environment is None:
            self._environment = hashlib.sha256(canonical(environment()).encode()).hexdigest()
        return self._environment

    def target_key(self, where: str, *, identity: str, codes: Iterable[str], severity: Mapping[str, Any],
                   ignores: Iterable[Any], plan: Any, options: Mapping[str, Any], offline: bool,
                   hub_timeout: float | None = None) -> TargetKey | None:
        """The key of ``where``'s result under these settings, or None when it is not cacheable
        (``hub_timeout``: the target's time limit, for a Hub id's look-up)."""
        source = target_source(where, trust_remote_code=bool(options.get("trust_remote_code")), offline=offline,
                               hub_timeout=hub_timeout)
        if source is None:
            return None
        kind, pointer, depends = source
        parts = {
            "environment": self.environment_digest,
            "cwd": os.getcwd(),
            "codes": sorted(codes),
            "severity": {str(k): str(v) for k, v in severity.items()},
            "options": dict(options),
            "identity": identity,
            "kind": kind,
            "pointer": pointer,
            "ignores": list(ignores),
            "plan": plan,
        }
        return TargetKey(hashlib.sha256(canonical(parts).encode()).hexdigest(), kind, depends)

    # entries

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def read(self, name: str) -> dict[str, Any] | None:
        """The body of entry ``name``, or None when it is missing, corrupt, truncated or foreign."""
        try:
            raw = self._path(name).read_bytes()
            entry = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("archlint_cache") != FORMAT or entry.get("key") != name:
            return None
        body = entry.get("body")
        if not isinstance(body, dict) or entry.get("checksum") != _checksum(body):
            return None
        return body

    def write(self, name: str, body: dict[str, Any]) -> None:
        """Store entry ``name`` atomically; a cache that cannot be written is skipped silently."""
        entry = {"archlint_cache": FORMAT, "key": name, "checksum": _checksum(body), "body": body}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name[:16]}.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(entry, fh, ensure_ascii=False)
                os.replace(tmp, self._path(name))
            except BaseException:
                with _quiet():
                    os.unlink(tmp)
                raise
        except OSError:
            pass

    def load(self, key: TargetKey):
        """The stored :class:`~archlint.report.TargetResult` for ``key`` when every file it was
        read from is unchanged, else None."""
        from .report import TargetResult

        body = self.read(key.digest)
        if body is None:
            return None
        recorded = body.get("depends")
        if not isinstance(recorded, dict) or any(recorded.get(f) != d for f, d in key.depends.items()):
            return None
        if any(file_digest(f) != d for f, d in recorded.items() if f not in key.depends):
            return None
        try:
            return TargetResult.from_data(body["result"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def save(self, key: TargetKey, result, built_files: Mapping[str, str]) -> None:
        body = {"depends": {**key.depends, **built_files}, "result": result.to_data(), "stored": time.time()}
        self.write(key.digest, body)

    # the rule catalogue: selection without importing the rules

    def _catalogue_name(self) -> str:
        return "catalogue-" + self.environment_digest

    def load_catalogue(self) -> StoredCatalogue | None:
        """The rules' codes and names (for selection), what renderers show of each rule and
        why each broken plugin was skipped, as stored by the first lint under this
        environment; None when there is none."""
        from .findings import Confidence, Severity
        from .report import RuleInfo

        body = self.read(self._catalogue_name())
        if body is None:
            return None
        try:
            names = tuple((str(c), str(n)) for c, n in body["rules"])
            info = {code: RuleInfo(**{**fields, "severity": Severity.parse(fields["severity"]),
                                      "confidence": Confidence(fields["confidence"]), "tools": tuple(fields["tools"])})
                    for code, fields in body["info"].items()}
            problems = tuple(str(p) for p in body["plugin_problems"])
        except (KeyError, TypeError, ValueError):
            return None
        return StoredCatalogue(names, info, problems)

    def save_catalogue(self, names: Iterable[tuple[str, str]], info: Mapping[str, Any],
                       plugin_problems: Iterable[str] = ()) -> None:
        self.write(self._catalogue_name(), {
            "rules": [list(pair) for pair in names],
            "plugin_problems": list(plugin_problems),
            "info": {code: {**asdict(i), "severity": str(i.severity), "confidence": str(i.confidence),
                            "tools": list(i.tools)} for code, i in info.items()},
        })

    # maintenance

    def _files(self) -> list[Path]:
        try:
            return [p for p in self.directory.iterdir() if p.is_file() and p.suffix in (".json", ".tmp")]
        except OSError:
            return []

    def info(self) -> CacheInfo:
        files = [p for p in self._files() if p.suffix == ".json"]
        return CacheInfo(self.directory, len(files), sum(_size(p) for p in files))

    def clear(self) -> int:
        """Remove every entry; the number removed."""
        removed = 0
        for p in self._files():
            with _quiet():
                p.unlink()
                removed += p.suffix == ".json"
        return removed


def _checksum(body: Any) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _quiet:
    """Ignore an OSError (a file another run removed first)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        return kind is not None and issubclass(kind, OSError)
