"""`livepulse simulate`: write a scenario's contract stream and its truth file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streams.commands import options
from streams.tools.progress import bar
from streams.tools.simulator import (
    SCENARIOS,
    compute_truth,
    generate,
    get_scenario,
    truth_path,
    write_lines,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated live-room stream (JSON Lines) and its truth file",
        description="Write a scenario's event stream in production order, with contract noise, "
        "to OUT, and the exact value of every claim to OUT with .jsonl replaced by "
        ".truth.json.",
    )
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--out", type=Path, required=True, help="stream file to write (.jsonl)")
    p.add_argument(
        "--scale",
        type=options.positive_float,
        default=1.0,
        help="audience and population multiplier (default: 1, about 18k lines for xhs and "
        "11k for impulse)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = get_scenario(args.scenario)
    began = time.perf_counter()
    # The weekly status on a terminal only: a pipe or a log gets the summary lines below.
    with bar(desc=f"simulate {scenario.name}", bar_format="{desc}: {elapsed}{postfix}") as shown:
        generated = generate(
            scenario,
            args.seed,
            args.scale,
            progress=None if shown.disable else shown.set_postfix_str,
        )
    generated_s = time.perf_counter() - began
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_lines(args.out, generated.lines)
    except OSError as exc:
        print(
            f"livepulse simulate: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    junk = sum(generated.junk.values())
    print(
        f"{args.out}: {len(generated.lines)} lines ({generated.events} events, "
        f"{generated.redeliveries} redelivered, {junk} junk) from {generated.sessions} sessions, "
        f"{generated.orders} orders; generated in {generated_s:.2f}s "
        f"({generated.events / max(generated_s, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )

    began = time.perf_counter()
    truth = compute_truth(generated.lines, scenario=scenario.name, seed=args.seed)
    truth_s = time.perf_counter() - began
    target = truth_path(args.out)
    target.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    events = truth["events"]
    print(
        f"{target}: valid {events['valid']}, rejected {events['rejected']}, "
        f"duplicates {events['duplicates']}; computed in {truth_s:.2f}s",
        file=sys.stderr,
    )
    for claim_id, figures in truth["claims"].items():
        observed = figures["observed"]
        shown = "n/a" if observed is None else f"{observed:.4g}"
        print(f"  {claim_id:<24} {shown}", file=sys.stderr)
    return 0
