"""Mutated real configs through ``archlint.lint()``: does anything escape, does anything hang?

Draws N examples from tests/config_mutations.py (the bundled real configs with type swaps,
extreme and negative numbers, NaN, deletions, nesting up to 10,000 deep, Unicode, other
model types), writes each as a config.json and lints it the way a user would, with a time
limit per target. Each call runs in a worker thread joined with the limit plus a grace
period, so that even a hang archlint could not end is counted instead of stopping the run.

Counted per example:

* escaped -- ``lint()`` raised;
* hung    -- ``lint()`` had not returned after the time limit plus the grace period;
* invalid -- a result with neither a built model nor an error of a documented kind;
* the kind of every error (``internal`` = an exception archlint did not anticipate).

    python benchmarks/fuzz_configs.py [--examples 10000] [--timeout 20] [--select ATTN001|all]

``--select`` defaults to ATTN001, the cheapest rule, so that 10,000 builds fit in well under
an hour on two cores; ``--select all`` runs every rule (slower: use fewer examples).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRACE = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=20.0, help="per-target time limit passed to lint()")
    parser.add_argument("--select", default="ATTN001", help="rule codes (comma-separated), or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depth", type=int, default=2, help="layers the base configs are cut to before mutating")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="stop linting after this long and report the examples done")
    args = parser.parse_args()

    from config_mutations import mutated_configs
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from archlint import lint
    from archlint.errors import KINDS

    select = None if args.select == "all" else args.select.split(",")
    lint("fixtures/zoo/bare.py:BareProjectionModel")  # imports and warm caches outside the timings
    counts: collections.Counter[str] = collections.Counter()
    slowest: list[tuple[float, str]] = []
    examples: dict[str, str] = {}  # outcome -> one example text
    folder = Path(tempfile.mkdtemp(prefix="archlint-fuzz-"))
    start = time.monotonic()

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(mutated_configs(depth=args.depth))
    def one(text: str) -> None:
        if args.budget is not None and time.monotonic() - start > args.budget:
            return  # out of time: the rest of the draws are skipped, the report covers what ran
        (folder / "config.json").write_text(text, encoding="utf-8")
        box: dict = {}

        def work():
            try:
                box["report"] = lint(str(folder), select=select, timeout=args.timeout)
            except BaseException as e:  # noqa: BLE001 -- counting is the point
                box["error"] = e

        began = time.monotonic()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(args.timeout + GRACE)
        seconds = time.monotonic() - began
        slowest.append((seconds, text[:120]))
        slowest.sort(reverse=True)
        del slowest[5:]
        if worker.is_alive():
            outcome = "hung"
        elif "error" in box:
            outcome = f"escaped {type(box['error']).__name__}"
        else:
            result = box["report"].results[0]
            if result.error is not None:
                outcome = f"error {result.error.kind}" if result.error.kind in KINDS else "invalid"
            elif result.model is not None:
                outcome = "linted"
            else:
                outcome = "invalid"
        counts["examples"] += 1
        counts[outcome] += 1
        examples.setdefault(outcome, text[:300])
        if counts["examples"] % 250 == 0:
            escaped_so_far = sum(n for k, n in counts.items() if k.startswith("escaped"))
            print(f"  {counts['examples']} examples, {time.monotonic() - start:.0f} s: escaped {escaped_so_far}, "
                  f"hung {counts['hung']}, invalid {counts['invalid']}, internal {counts['error internal']}, "
                  f"timeout {counts['error timeout']}", file=sys.stderr, flush=True)

    one()
    total = time.monotonic() - start
    escaped = sum(n for k, n in counts.items() if k.startswith("escaped"))
    print(f"fuzz_configs: {counts['examples']} mutated real configs, select={args.select}, "
          f"timeout={args.timeout:g} s, seed={args.seed}, "
          f"{total:.0f} s ({total / max(1, counts['examples']):.2f} s each)")
    print(f"escaped: {escaped}   hung: {counts['hung']}   invalid results: {counts['invalid']}")
    print(f"linted: {counts['linted']}")
    for outcome, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if outcome.startswith("error "):
            print(f"  {outcome[6:]:<20} {n}")
    print("slowest: " + ", ".join(f"{s:.1f} s" for s, _ in slowest))
    for outcome in ("hung", "invalid", "error internal", *(k for k in counts if k.startswith("escaped"))):
        if outcome in examples:
            print(f"example of {outcome}: {examples[outcome]}")
    return 1 if escaped or counts["hung"] or counts["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
