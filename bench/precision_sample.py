"""Draw the precision sample of bench/precision.md from `pipeline analyze --format json` output.

    pipeline analyze --repo /work/repos/otel --format json > otel.json
    python -m bench.precision_sample otel=otel.json awesome=awesome.json

Per repository: the findings sorted by (rule, id), every k-th from the first, k = n // 25,
25 each: a systematic sample spread across the rules in proportion to their counts (every
rule with k findings or more is in it), and anyone with the same findings draws the same one.
Prints a markdown table to fill in with verdicts.
"""

from __future__ import annotations

import json
import sys


def sample(findings: list[dict], size: int) -> list[dict]:
    ordered = sorted(findings, key=lambda f: (f["rule"], f["id"]))
    step = max(1, len(ordered) // size)
    return ordered[::step][:size]


def main(argv: list[str]) -> None:
    size = 25
    print("| # | repo | rule | location | message | verdict | reason |")
    print("|---|---|---|---|---|---|---|")
    n = 0
    for arg in argv:
        repo, _, path = arg.partition("=")
        with open(path, encoding="utf-8") as fh:
            findings = json.load(fh)["findings"]
        for f in sample(findings, size):
            n += 1
            where = f"{f['file']}:{f['line']}" if f["line"] else f["file"]
            message = f["message"].replace("|", "\\|")
            print(f"| {n} | {repo} | {f['rule']} | {where} | {message} |  |  |")


if __name__ == "__main__":
    main(sys.argv[1:])
