"""Is one system's lead over another more than chance? Paired over the same queries of one `mmkg eval` run.

    .venv/bin/mmkg eval --data DIR ... --per-query runs.jsonl
    .venv/bin/python benchmarks/paired_systems.py runs.jsonl full nnn

For each direction, from each query's first relevant rank and average precision under both systems: R@1, R@5,
R@10, the reciprocal rank and AP (whose mean is the mAP) of each system, the difference with a 95 % bootstrap
interval (2,000 resamples of the queries), how many queries each system scores higher, and the two-sided sign
test of those counts.
A lead whose interval holds 0 is within what another draw of queries could reverse.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
from pathlib import Path

import numpy as np

RESAMPLES = 2000


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p of `wins` against `losses` at even odds."""
    n, k = wins + losses, min(wins, losses)
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def runs(path: Path) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(system, direction) -> per query, in the file's (the queries') order: `rank`, the 0-based first relevant
    rank, and `ap`, the average precision (files written before it was recorded have none)."""
    out: dict[tuple[str, str], dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for field in ("rank", "ap"):
                if field in row:
                    out[(row["system"], row["direction"])][field].append(row[field])
    return {key: {field: np.asarray(values) for field, values in fields.items()} for key, fields in out.items()}


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rng: np.random.Generator
            ) -> list[tuple[str, float, float, float, float, float, int, int, float]]:
    """(measure, a, b, difference, interval low, high, a ahead, b ahead, sign p), figures in percent."""
    rows = []
    measures = {f"R@{k}": (a["rank"] < k, b["rank"] < k) for k in (1, 5, 10)}
    measures["recip. rank"] = (1.0 / (a["rank"] + 1), 1.0 / (b["rank"] + 1))
    if "ap" in a and "ap" in b:
        measures["AP"] = (a["ap"], b["ap"])
    for name, (x, y) in measures.items():
        diff = x.astype(float) - y.astype(float)
        means = diff[rng.integers(0, len(diff), (RESAMPLES, len(diff)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        ahead, behind = int((diff > 0).sum()), int((diff < 0).sum())
        rows.append((name, 100 * x.mean(), 100 * y.mean(), 100 * diff.mean(), 100 * low, 100 * high, ahead, behind,
                     sign_test(ahead, behind)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("per_query", type=Path, help="the file `mmkg eval --per-query` wrote")
    parser.add_argument("a", help="a system of that run (full)")
    parser.add_argument("b", help="the system it is compared with (nnn, bm25, encoder...)")
    args = parser.parse_args()
    by_run = runs(args.per_query)
    rng = np.random.default_rng(0)
    wa, wb = max(10, len(args.a) + 2), max(10, len(args.b) + 2)
    print(f"{'direction':10s}{'measure':>12s}{args.a:>{wa}s}{args.b:>{wb}s}{'diff':>8s}{'95 % interval':>18s}"
          f"{'a ahead':>9s}{'b ahead':>9s}{'sign p':>10s}")
    for direction in sorted({d for _, d in by_run}):
        if (args.a, direction) not in by_run or (args.b, direction) not in by_run:
            continue
        for name, x, y, d, low, high, ahead, behind, p in compare(by_run[(args.a, direction)],
                                                                   by_run[(args.b, direction)], rng):
            print(f"{direction:10s}{name:>12s}{x:{wa}.2f}{y:{wb}.2f}{d:+8.2f}{f'[{low:+.2f}, {high:+.2f}]':>18s}"
                  f"{ahead:9d}{behind:9d}{p:10.2g}")


if __name__ == "__main__":
    main()
