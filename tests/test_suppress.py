"""Inline ``# archlint: ignore[...]`` pragmas in a model's own source, and ARCH001 for unused ones."""

from __future__ import annotations

from support import REPO

from archlint import lint

MODEL = '''\
from torch import nn


class Clamped(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.linear = nn.Linear(d, d)

    def forward(self, x):
        return self.linear(x).clamp(-1, 1)


class Quiet(nn.Module):  # archlint: ignore[LORA001] accepted everywhere it is used
    def __init__(self, d=4):
        super().__init__()
        self.linear = nn.Linear(d, d)

    def forward(self, x):
        return self.linear(x).clamp(-1, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Clamped()  # archlint: ignore[linear-wrapper] a is frozen
        self.b = Clamped(
            4,
        )  # archlint: ignore[LORA] pragmas may sit on any line of the statement
        self.c = Clamped()
        self.q = Quiet()
        self.plain = nn.Linear(4, 4)  # archlint: ignore[LORA001] nothing to suppress here
        self.block = nn.Sequential(Clamped(), nn.Linear(4, 4))  # archlint: ignore[LORA001] the whole subtree
    # archlint: ignore[LORA001] not attached to anything

    def forward(self, x):
        return x


class Other(nn.Module):
    def __init__(self):
        super().__init__()
        self.x = Clamped()  # archlint: ignore[LORA001] another model's business

    def forward(self, x):
        return x


class Sloppy(nn.Module):
    def __init__(self):
        super().__init__()
        self.x = Clamped()  # archlint: ignore LORA001 no brackets
        self.y = Clamped()  # archlint: ignore[LORA123] no such rule
        self.z = nn.Linear(4, 4)

    def forward(self, x):
        return x
'''


def lint_model(tmp_path, name, select=("LORA001", "ARCH001")):
    file = tmp_path / "model.py"
    file.write_text(MODEL)
    return lint(f"{file}:{name}", select=list(select)).results[0]


def by_code(result, code):
    return [f for f in result.findings if f.code == code]


def test_pragmas_silence_exactly_the_modules_they_name(tmp_path):
    result = lint_model(tmp_path, "Net")
    assert result.error is None
    # a, b (multi-line statement), q (class line) and block (subtree) are silenced; c is not
    assert {p for f in by_code(result, "LORA001") for p in f.paths} == {"c"}


def test_unused_and_misplaced_pragmas_are_reported_with_their_line(tmp_path):
    result = lint_model(tmp_path, "Net")
    unused = {f.details["line"]: f for f in by_code(result, "ARCH001")}
    assert sorted(unused) == [31, 33], [f.message for f in unused.values()]
    assert unused[31].paths == ("plain",) and "matched no LORA001 finding" in unused[31].message
    assert "model.py:31" in unused[31].message and unused[31].fix.detail.endswith("nothing to suppress here")
    assert unused[33].paths == () and "misplaced" in unused[33].message
    # Other's pragma (line 42) belongs to a class this model does not use: not judged


def test_malformed_and_unknown_code_pragmas_are_reported(tmp_path):
    result = lint_model(tmp_path, "Sloppy")
    messages = {f.details["line"]: f.message for f in by_code(result, "ARCH001")}
    assert "malformed" in messages[51] and "unknown rule code 'LORA123'" in messages[52]
    assert {p for f in by_code(result, "LORA001") for p in f.paths} == {"x", "y"}  # neither pragma works


def test_codes_that_did_not_run_are_not_judged_and_arch001_can_be_ignored(tmp_path):
    # LORA001 did not run: its pragmas cannot be judged unused; a misplaced pragma is wrong regardless
    unused = by_code(lint_model(tmp_path, "Net", select=("NORM", "ARCH001")), "ARCH001")
    assert [f.details["line"] for f in unused] == [33]
    assert by_code(lint_model(tmp_path, "Net", select=("LORA001",)), "ARCH001") == []


def test_a_used_class_pragma_in_the_zoo():
    result = lint(str(REPO / "fixtures/zoo/suppressed.py") + ":QuietWrappers", select=["LORA", "ARCH"]).results[0]
    assert result.findings == []
