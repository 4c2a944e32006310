"""`python -m bench.aov_sample [--sessions N ...] [--seeds S]`: the error of `live_aov`'s
overall interval from a sample of `AOV_SAMPLE_SIZE` sessions' rows and the exact sums of all
(`metrics._aov_interval`), against the bootstrap-t over every row (`stats.
cluster_ratio_t_interval`), on synthetic sessions (order counts 1 + Poisson(8), log-normal
amounts around 36,000 cents, sigma 0.8 and 1.5). Beside it, the bootstrap's own spread: the
same all-row interval with 5 other bootstrap seeds. Errors are the larger end's distance over
the all-row interval's half-width; CPU seconds of each interval are printed too."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from agents.core.metrics import RETIRED_AOV, _aov_interval
from agents.core.sample import AOV_SAMPLE_SIZE, bottom_k
from agents.core.stats import cluster_ratio_t_interval, ratio_sums


def _rows(sessions: int, seed: int, sigma: float) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(8, sessions) + 1
    rows: dict[str, list[int]] = {}
    for index, n in enumerate(counts):
        amounts = np.round(rng.lognormal(10.5, sigma, n)).astype(np.int64)
        rows[f"s-{seed}-{index}"] = [int(amounts.sum()), int(n)]
    return rows


def _error(got: tuple[float, float], every: tuple[float, float]) -> float:
    half = (every[1] - every[0]) / 2
    return max(abs(got[0] - every[0]), abs(got[1] - every[1])) / half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, action="append")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    out = []
    for sessions in args.sessions or [8000, 20000]:
        for sigma in (0.8, 1.5):
            for seed in range(args.seeds):
                rows = _rows(sessions, seed, sigma)
                data = [rows[sid] for sid in sorted(rows)]
                began = time.process_time()
                every = cluster_ratio_t_interval(data)
                every_cpu = time.process_time() - began
                assert every is not None
                sample = bottom_k(rows, AOV_SAMPLE_SIZE)
                part: dict[str, list[int]] = dict(sample)
                rest = {sid: row for sid, row in rows.items() if sid not in sample}
                part[RETIRED_AOV] = list(ratio_sums(rest.values()))
                began = time.process_time()
                got = _aov_interval(dict(sorted(part.items())), ratio_sums(rows.values()))
                sample_cpu = time.process_time() - began
                assert got is not None
                spread = []
                for other in range(1, 6):
                    again = cluster_ratio_t_interval(data, seed=other)
                    assert again is not None
                    spread.append(round(_error(again, every), 4))
                row = {
                    "sessions": sessions,
                    "sigma": sigma,
                    "seed": seed,
                    "sample_error": round(_error(got, every), 4),
                    "bootstrap_seed_spread": spread,
                    "cpu_s_every_row": round(every_cpu, 3),
                    "cpu_s_sample": round(sample_cpu, 3),
                }
                out.append(row)
                sys.stderr.write(json.dumps(row) + "\n")
    sys.stdout.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
