"""`livepulse analyze FILE.jsonl`: the claims and operator report of a file, with no broker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streams.commands import options


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="compute the claims report of a JSON Lines file offline",
        description="Read a JSON Lines file through the metric core the worker runs (no "
        "broker) and print the claims table, the event counts and the operator summary, or the "
        "report as JSON (--json). Bad lines are rejected and counted, as on a topic; a file "
        "none of whose first lines is a JSON object is refused. A file with its .truth.json "
        "beside it came from `livepulse simulate`: the report then says that its verdicts "
        "describe the simulated rooms.",
    )
    p.add_argument("file", type=Path, help="contract events, one JSON object per line")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write the report as one HTML page"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `livepulse --help` and the other commands start without the metric core.
    from pydantic import ValidationError

    from agents.core import OperatorBoard, render_table
    from streams.commands.report import write_html
    from streams.runtime.provenance import mark_if_simulated
    from streams.runtime.settings import Settings
    from streams.tools.analyze import analyze_file

    problem = options.jsonl_problem(args.file)
    if problem is not None:
        print(f"livepulse analyze: {problem}", file=sys.stderr)
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"livepulse analyze: {options.settings_error(exc)}", file=sys.stderr)
        return 2
    board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
    report = analyze_file(
        args.file,
        progress=sys.stderr,
        board=board,
        dedupe_window_ms=settings.dedupe_window_ms,
        future_tolerance_ms=settings.future_tolerance_ms,
        refund_horizon_ms=settings.refund_horizon_ms,
        fold_sessions=settings.fold_sessions,
        periods=settings.period_settings,
        board_horizon_ms=settings.board_horizon_ms,
        user_horizon_ms=settings.user_horizon_ms,
        pair_horizon_ms=settings.first_order_horizon_ms,
        board_runs_kept=settings.board_runs_kept,
        distinct_limit=settings.distinct_exact_limit,
        rank_cell_limit=settings.rank_cell_limit,
    )
    mark_if_simulated(report, args.file)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(render_table(report))
    if args.html is not None:
        return write_html(report, args.html, str(args.file), "livepulse analyze")
    return 0
