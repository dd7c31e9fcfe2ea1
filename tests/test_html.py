"""``--format html``: one self-contained page, checked in a real headless Chromium.

The browser is Debian's ``chromium`` (``.ci/run`` installs it where it can). Where no
browser exists the browser tests skip with a message; the self-containment checks always run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import REPO, config, lint_cached

from archlint.cli import main
from archlint.render import RenderOptions, render

GEMMA4 = config("google__gemma-4-E2B-it")
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("html") / "gemma4.html"
    path.write_text(render(lint_cached(GEMMA4), "html", RenderOptions()), encoding="utf-8")
    return path


def browser(*args: str) -> subprocess.CompletedProcess:
    if BROWSER is None:
        pytest.skip("no chromium on this machine (install Debian's `chromium`; .ci/run does) - "
                    "the HTML report was not rendered in a browser")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([BROWSER, *HEADLESS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


class _Paths(HTMLParser):
    """Collects each ``li.path`` (a module path on a tree node) inside the module tree."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.paths: list[tuple[str, str, bool]] = []  # (class, path, inside .tree)
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.stack.append((tag, attrs))
        if tag == "li" and "path" in (attrs.get("class") or "").split():
            in_tree = any("tree" in (a.get("class") or "").split() for _, a in self.stack)
            self._current = {"class": attrs.get("data-class"), "text": "", "tree": in_tree}

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass
        if tag == "li" and self._current is not None:
            self.paths.append((self._current["class"], self._current["text"].strip(), self._current["tree"]))
            self._current = None

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data


def test_the_page_needs_no_network(page):
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page loads something from the network"
    assert "<link" not in html and "@import" not in html and "<script src" not in html
    assert "<style>" in html and "<script>" in html


def test_html_format_and_report_option(tmp_path):
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        out = CliRunner().invoke(main, ["fixtures/zoo/towers.py:WrappedVisionTower", "--select", "LORA001",
                                        "--format", "html", "--report", f"html:{tmp_path / 'r.html'}",
                                        "--report", f"json:{tmp_path / 'r.json'}"], env={"HF_HUB_OFFLINE": "1"})
    finally:
        os.chdir(cwd)
    assert out.exit_code == 1
    assert out.stdout.startswith("<!DOCTYPE html>") and (tmp_path / "r.html").read_text() == out.stdout
    paths = {p for f in json.loads((tmp_path / "r.json").read_text())["results"][0]["findings"] for p in f["paths"]}
    parser = _Paths()
    parser.feed(out.stdout)
    assert {p for _, p, tree in parser.paths if tree} == paths


def test_chromium_shows_every_wrapper_path_under_the_towers(page):
    proc = browser("--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    parser = _Paths()
    parser.feed(dom)
    wrappers = {p for cls, p, tree in parser.paths if cls == "Gemma4ClippableLinear" and tree}
    expected = {p for f in lint_cached(GEMMA4).results[0].findings if f.code == "LORA001" for p in f.paths}
    assert len(expected) == 232
    assert wrappers == expected
    assert all(".audio_tower." in p or ".vision_tower." in p for p in wrappers)
    # findings coloured by severity, a copy button per fix, the recipes table
    assert 'class="finding error"' in dom and 'class="finding warning"' in dom and 'class="finding info"' in dom
    assert dom.count('class="copy"') >= 5
    assert "LoRA recipes" in dom and "breaks" in dom and "works" in dom


def test_chromium_screenshot_is_drawn(page, tmp_path):
    shot = tmp_path / "gemma4.png"
    proc = browser("--window-size=1400,1800", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1800)
    assert len(data) > 100_000  # a page of text, badges and a tree, not a blank canvas
    keep = os.environ.get("ARCHLINT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
