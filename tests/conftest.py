"""Shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import hub_server` from any rootdir / import mode

from hub_server import GEMMA, HUB_TOKEN, FakeHub, fake_hub_repos  # noqa: E402

# -- one run: lints shared by its workers, the slowest tests started first ------------


def pytest_configure(config):
    """In the controlling process (the only one without ``workerinput``), before pytest-xdist
    starts its workers, which inherit the environment: a folder for the lints they share."""
    import tempfile

    from support import SHARED_LINTS

    if not hasattr(config, "workerinput") and SHARED_LINTS not in os.environ:
        config._archlint_shared_lints = tempfile.mkdtemp(prefix="archlint-test-lints-")
        os.environ[SHARED_LINTS] = config._archlint_shared_lints


def pytest_unconfigure(config):
    import shutil

    from support import SHARED_LINTS

    folder = getattr(config, "_archlint_shared_lints", None)
    if folder:
        os.environ.pop(SHARED_LINTS, None)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` first (a stable sort: the same order in every worker), so that
    two workers do not end with one of them alone on a long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# -- every JSON report and SARIF log rendered in this process is schema-checked --------


@pytest.fixture(autouse=True, scope="session")
def _validate_rendered_reports():
    """Wrap the JSON and SARIF renderers so that any document a test renders is validated.

    Subprocess runs are checked by ``support.check_outputs`` instead.
    """
    import json

    from support import validate_report, validate_sarif

    from archlint.render import json_format, sarif

    patch = pytest.MonkeyPatch()
    for module, validate in ((json_format, validate_report), (sarif, validate_sarif)):
        def checked(report, options, _render=module.render, _validate=validate):
            text = _render(report, options)
            _validate(json.loads(text))
            return text

        patch.setattr(module, "render", checked)
    yield
    patch.undo()


# -- never the real user cache -------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_result_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty result cache of its own (``XDG_CACHE_HOME``, inherited by
    subprocesses): no test reads or writes the user's, or another test's."""
    monkeypatch.delenv("ARCHLINT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


# -- the same report width however the suite is started ------------------------------


@pytest.fixture(autouse=True)
def _no_inherited_columns(monkeypatch):
    """No ``COLUMNS`` from the shell or the test runner (pytest-xdist's workers get
    ``COLUMNS=80``; a serial run gets the shell's or none): a report printed to a pipe is
    100 wide in every run, and a test that needs another width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)


# -- a fake Hugging Face Hub ----------------------------------------------------------

_HF_ENV_TO_CLEAR = (
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
    "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_XET_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


class FakeHubSession:
    """The running :class:`FakeHub` plus the environment pointing huggingface_hub at it.

    Attribute access falls through to the hub (``url``, ``requests``, ``paths``, ``filenames``,
    ``clear()``, ``stop()``, ...).
    """

    def __init__(self, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, hf_home: Path):
        self.hub = hub
        self.token = hub.token
        self.hf_home = hf_home
        self.cache_dir = hf_home / "hub"
        self._mp = monkeypatch

    def __getattr__(self, name):
        return getattr(self.hub, name)

    def set_token(self, token: str | None) -> None:
        """Set (or unset) ``HF_TOKEN``; huggingface_hub reads it on every request."""
        if token is None:
            self._mp.delenv("HF_TOKEN", raising=False)
        else:
            self._mp.setenv("HF_TOKEN", token)

    def set_offline(self, offline: bool = True) -> None:
        """``HF_HUB_OFFLINE``, in the environment and in huggingface_hub's import-time constant."""
        import huggingface_hub.constants as hf_constants

        if offline:
            self._mp.setenv("HF_HUB_OFFLINE", "1")
        else:
            self._mp.delenv("HF_HUB_OFFLINE", raising=False)
        self._mp.setattr(hf_constants, "HF_HUB_OFFLINE", offline)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess (e.g. the archlint CLI) talking to this hub."""
        env = dict(os.environ)
        env.update(extra)
        return env


@pytest.fixture
def fake_hub(tmp_path_factory, monkeypatch):
    """A fake Hub on 127.0.0.1:<free port>, with huggingface_hub pointed at it and an empty cache.

    ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_CACHE`` are set (for subprocesses) and the matching
    module-level constants of ``huggingface_hub.constants`` are patched (for this process: they
    are read once, at import time). No token, not offline.
    """
    import huggingface_hub.constants as hf_constants

    hf_home = tmp_path_factory.mktemp("hf_home")
    cache = hf_home / "hub"
    hub = FakeHub(fake_hub_repos(), gated={GEMMA}, token=HUB_TOKEN).start()

    for name in _HF_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    constants = {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    for name, value in constants.items():
        if hasattr(hf_constants, name):
            monkeypatch.setattr(hf_constants, name, value)

    try:
        yield FakeHubSession(hub, monkeypatch, hf_home)
    finally:
        hub.stop()
