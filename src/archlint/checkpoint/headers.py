"""Read safetensors headers -- names, dtypes, shapes -- and never a tensor byte.

A safetensors file starts with an 8-byte little-endian header length ``N`` and ``N``
bytes of JSON (``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}``);
the tensors follow. Locally, huggingface_hub's ``parse_local_safetensors_file_metadata``
reads exactly those ``8 + N`` bytes (archlint does the same, :func:`read_local_header`).
On the Hub, ``get_safetensors_metadata`` fetches the
first 100 kB of every shard in one request, which for a small header reads tensor
bytes too; archlint asks for exactly the header instead, two range requests per shard
(``bytes=0-7``, then ``bytes=8-(N+7)``), with huggingface_hub's URLs, session, auth
headers, error mapping and header parser.

A checkpoint is opened (:func:`open_local`, :func:`open_hub`: the list of files, and the
index's entries on request, :func:`index_entries`) and its headers then arrive one file at a time
(:meth:`Checkpoint.headers`), so that a caller can use each file's header and drop it
before the next is parsed; :func:`read_local`/:func:`read_hub` collect them all.
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointUnreadable(Exception):
    """The headers could not be read (no safetensors, a broken header, a network error)."""


@dataclass(frozen=True)
class TensorHeader:
    dtype: str  # safetensors dtype: "BF16", "F32", "F8_E4M3", "U8", ...
    shape: tuple[int, ...]
    file: str


@dataclass
class Headers:
    """Every tensor a checkpoint stores, from its headers only.

    Tensors of one file with the same dtype and shape (the experts of a MoE, the layers of
    a stack) share one :class:`TensorHeader`, so a checkpoint of tens of thousands of
    tensors costs little more than its names; the parsed JSON of a file is dropped once
    added."""

    source: str  # the folder or "org/name@revision"
    tensors: dict[str, TensorHeader] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    header_bytes: int = 0  # bytes of header read (8 + N per file)

    def add_file(self, filename: str, header: dict) -> None:
        self.files.append(filename)
        shared: dict[tuple[str, tuple[int, ...]], TensorHeader] = {}
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            key = (str(info["dtype"]), tuple(int(d) for d in info["shape"]))
            record = shared.get(key)
            if record is None:
                record = shared[key] = TensorHeader(*key, filename)
            self.tensors[name] = record


def has_local_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and ((folder / INDEX_FILE).is_file() or any(folder.glob("*.safetensors")))


@dataclass
class Checkpoint:
    """An opened checkpoint: its safetensors files, and their headers one file at a time."""

    source: str  # the folder or "org/name@revision"
    files: list[str]
    read_header: Callable[[str], tuple[dict, int]]  # one file's JSON header and the bytes read for it
    index: Path | None = None  # the local copy of model.safetensors.index.json, if there is one
    workers: int = 1  # headers fetched ahead of the one in use (network reads)

    def index_entries(self) -> Iterator[tuple[str, str]] | None:
        """The index's ``weight_map`` as ``(key, file)`` pairs, one at a time (None without an index)."""
        return index_entries(self.index) if self.index is not None else None

    def headers(self) -> Iterator[tuple[str, dict, int]]:
        """``(file, header, bytes read)`` for each file in order. With ``workers > 1`` the next
        few headers are fetched while one is in use, never more than ``workers`` at once."""
        if self.workers <= 1 or len(self.files) <= 1:
            for filename in self.files:
                yield (filename, *self.read_header(filename))
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(self.files))) as pool:
            ahead: deque = deque()
            names = iter(self.files)
            for filename in names:
                ahead.append((filename, pool.submit(self.read_header, filename)))
                if len(ahead) >= self.workers:
                    break
            while ahead:
                filename, future = ahead.popleft()
                header, size = future.result()
                nxt = next(names, None)
                if nxt is not None:
                    ahead.append((nxt, pool.submit(self.read_header, nxt)))
                yield filename, header, size
                del header

    def read_all(self) -> Headers:
        """Every file's header, collected (:class:`Headers`)."""
        headers = Headers(self.source)
        for filename, header, size in self.headers():
            headers.add_file(filename, header)
            headers.header_bytes += size
        return headers


def read_local(folder: str | Path) -> Headers:
    """The headers of a local folder: the index's shards, else ``model.safetensors``, else
    every ``*.safetensors`` file."""
    return open_local(folder).read_all()


def open_local(folder: str | Path) -> Checkpoint:
    """A local folder's checkpoint (the index's shards, else ``model.safetensors``, else every
    ``*.safetensors`` file); nothing but the index is read yet."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file():
        return Checkpoint(str(folder), _unindexed_files(folder), lambda filename: read_local_header(folder / filename))
    return Checkpoint(str(folder), _indexed_files(index), lambda filename: read_local_header(folder / filename), index)


def read_local_header(path: Path) -> tuple[dict, int]:
    """One file's JSON header and the bytes read for it (``8 + N``); nothing after it."""
    from huggingface_hub import constants

    try:
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) != 8:
                raise CheckpointUnreadable(f"{path}: too small to be a safetensors file")
            size = struct.unpack("<Q", prefix)[0]
            if size > constants.SAFETENSORS_MAX_HEADER_LENGTH:
                raise CheckpointUnreadable(f"{path}: header of {size} bytes exceeds the safetensors limit")
            raw = fh.read(size)
    except OSError as e:
        raise CheckpointUnreadable(f"{path}: {e}") from e
    if len(raw) != size:
        raise CheckpointUnreadable(f"{path}: truncated header ({len(raw)} of {size} bytes)")
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise CheckpointUnreadable(f"{path}: the header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointUnreadable(f"{path}: the header is not a JSON object")
    return header, 8 + size


def _unindexed_files(folder: Path) -> list[str]:
    if (folder / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    return sorted(p.name for p in folder.glob("*.safetensors"))


def _indexed_files(index: Path) -> list[str]:
    return sorted({filename for _, filename in index_entries(index)})


#: One JSON string (its body, escapes kept), the separators around the index's members, and
#: the tokens of a JSON value (to find where a member other than weight_map ends).
_STRING = rb'"([^"\\]*(?:\\.[^"\\]*)*)"'
_MEMBER = re.compile(rb"\s*" + _STRING + rb"\s*:\s*")
_ENTRY = re.compile(rb"\s*" + _STRING + rb"\s*:\s*" + _STRING + rb"\s*([,}])")
_PUNCTUATION = re.compile(rb"\s*([{},])")
_VALUE_TOKEN = re.compile(rb'\s*(?:"(?:[^"\\]|\\.)*"|([{\[])|([}\]])|[^\s{}\[\],:"]+|[,:])')


def index_entries(index: Path) -> Iterator[tuple[str, str]]:
    """The ``weight_map`` of a safetensors index as ``(key, file)`` pairs, read in order
    from the file (memory-mapped, so its pages are given back when the reading ends) without
    building the dict: for a large checkpoint, a dict of every key and its file name costs
    more than the headers' own records. Other members (``metadata``) are checked with
    ``json`` and skipped. Raises :class:`CheckpointUnreadable` for anything but a JSON object
    whose ``weight_map`` maps strings to strings."""

    def fail(why: str) -> CheckpointUnreadable:
        return CheckpointUnreadable(f"{index}: not a safetensors index ({why})")

    try:
        with open(index, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as text:
            yield from _index_members(text, fail)
    except (OSError, ValueError) as e:  # unreadable, or empty (mmap refuses a 0-byte file)
        raise fail(str(e)) from e


def _index_members(text, fail) -> Iterator[tuple[str, str]]:
    found = False
    token = _PUNCTUATION.match(text)
    if token is None or token.group(1) != b"{":
        raise fail("not a JSON object")
    pos = token.end()
    token = _PUNCTUATION.match(text, pos)
    if token and token.group(1) == b"}":  # {}
        pos = token.end()
    else:
        while True:
            member = _MEMBER.match(text, pos)
            if member is None:
                raise fail(f"unexpected text at byte {pos}")
            name, pos = _unescape(member.group(1), fail), member.end()
            if name == "weight_map":
                found = True
                pos = yield from _weight_map_entries(text, pos, fail)
            else:
                pos = _skip_value(text, pos, fail)
            token = _PUNCTUATION.match(text, pos)
            if token is None or token.group(1) not in b",}":
                raise fail(f"unexpected text at byte {pos}")
            pos = token.end()
            if token.group(1) == b"}":
                break
    if text[pos:].strip():
        raise fail("text after the JSON object")
    if not found:
        raise fail("no weight_map")


def _weight_map_entries(text, pos: int, fail):
    """Yield the entries of the ``weight_map`` object starting at ``pos``; return the
    position after it."""
    token = _PUNCTUATION.match(text, pos)
    if token is None or token.group(1) != b"{":
        raise fail("weight_map is not an object")
    pos = token.end()
    empty = _PUNCTUATION.match(text, pos)
    if empty and empty.group(1) == b"}":
        return empty.end()
    while True:
        entry = _ENTRY.match(text, pos)
        if entry is None:
            raise fail(f"weight_map: not a string to string entry at byte {pos}")
        yield _unescape(entry.group(1), fail), _unescape(entry.group(2), fail)
        pos = entry.end()
        if entry.group(3) == b"}":
            return pos


def _skip_value(text, pos: int, fail) -> int:
    """The position after the JSON value at ``pos`` (which ``json`` then checks)."""
    start, depth = pos, 0
    while True:
        token = _VALUE_TOKEN.match(text, pos)
        if token is None:
            raise fail(f"unexpected text at byte {pos}")
        pos = token.end()
        depth += 1 if token.group(1) else -1 if token.group(2) else 0
        if depth <= 0:
            break
    try:
        json.loads(bytes(text[start:pos]))
    except ValueError as e:
        raise fail(str(e)) from e
    return pos


def _unescape(body: bytes, fail) -> str:
    try:
        return json.loads(b'"' + body + b'"') if b"\\" in body else body.decode("utf-8")
    except ValueError as e:
        raise fail(str(e)) from e


def read_hub(repo_id: str, revision: str | None = None, *, token: str | bool | None = None,
             workers: int = 8) -> Headers:
    """The headers of a Hub repository, by range requests that stop at each header's end."""
    checkpoint = open_hub(repo_id, revision, token=token, workers=workers)
    return _hub_errors(repo_id, checkpoint.read_all)


def open_hub(repo_id: str, revision: str | None = None, *, token: str | bool | None = None,
             workers: int = 8) -> Checkpoint:
    """A Hub repository's checkpoint: which files (``model.safetensors``, else the index's
    shards); each header is then read by range requests that stop at its end, ``workers``
    shards at a time."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(token=token)

    def files() -> tuple[list[str], Path | None]:
        if api.file_exists(repo_id, SINGLE_FILE, revision=revision):
            return [SINGLE_FILE], None
        if api.file_exists(repo_id, INDEX_FILE, revision=revision):
            index = Path(hf_hub_download(repo_id, INDEX_FILE, revision=revision, token=token))
            return _indexed_files(index), index
        raise CheckpointUnreadable(f"{repo_id}: no {SINGLE_FILE} or {INDEX_FILE} on the Hub")

    names, index = _hub_errors(repo_id, files)
    return Checkpoint(f"{repo_id}@{revision or 'main'}", names,
                      lambda filename: _hub_errors(repo_id, lambda: _hub_header(api, repo_id, filename, revision)),
                      index, workers=max(1, workers))


def _hub_errors(repo_id: str, call):
    """``call()``, with the Hub's and the HTTP client's errors as :class:`CheckpointUnreadable`."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return call()
    except CheckpointUnreadable:
        raise
    except HfHubHTTPError as e:
        raise CheckpointUnreadable(f"{repo_id}: reading safetensors headers failed: {_first_line(e)}") from e
    except Exception as e:  # the HTTP client's own errors (connection, timeout), a malformed index
        raise CheckpointUnreadable(f"{repo_id}: reading safetensors headers failed: "
                                   f"{type(e).__name__}: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _hub_header(api, repo_id: str, filename: str, revision: str | None) -> tuple[dict, int]:
    """One shard's JSON header: ``bytes=0-7`` for its length, then exactly the header."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import get_session, hf_raise_for_status

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=api.endpoint)
    auth = api._build_hf_headers()
    timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
    response = get_session().get(url, headers={**auth, "range": "bytes=0-7"}, timeout=timeout)
    hf_raise_for_status(response)
    prefix = response.content
    if len(prefix) != 8:
        raise CheckpointUnreadable(f"{repo_id}/{filename}: the server ignored the range request "
                                   f"(sent {len(prefix)} bytes for bytes=0-7)")
    size = struct.unpack("<Q", prefix)[0]
    if size > constants.SAFETENSORS_MAX_HEADER_LENGTH:
        raise CheckpointUnreadable(f"{repo_id}/{filename}: header of {size} bytes exceeds the safetensors limit")
    response = get_session().get(url, headers={**auth, "range": f"bytes=8-{size + 7}"}, timeout=timeout)
    hf_raise_for_status(response)
    if len(response.content) != size:
        raise CheckpointUnreadable(
            f"{repo_id}/{filename}: expected a {size}-byte header, got {len(response.content)} bytes")
    try:
        return json.loads(response.content), 8 + size
    except ValueError as e:
        raise CheckpointUnreadable(f"{repo_id}/{filename}: the header is not JSON ({e})") from e
