"""`livepulse report`: a running worker's claims report, as a table, its JSON or an HTML page."""

from __future__ import annotations

import argparse
import sys
import urllib.error
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:6066/report"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="print a running worker's claims report (or write it as an HTML page)",
        description="Fetch /report from a running worker and print it as a table (or, with "
        "--json, the JSON exactly as served); --html also writes a self-contained page with "
        "the claims and the plots behind them. --input uses a saved report JSON instead.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--from",
        dest="url",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"the worker's /report, or its base URL (default {DEFAULT_URL})",
    )
    source.add_argument(
        "--input",
        type=Path,
        metavar="REPORT.json",
        help="a report saved earlier (`report --json` or `analyze --json`) instead of a worker",
    )
    p.add_argument("--json", action="store_true", help="print the JSON as served")
    p.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write the report as one HTML page"
    )
    p.set_defaults(func=run)


def report_url(url: str) -> str:
    """`url` if it names /report, else its /report (a base URL such as http://host:6066)."""
    if "://" not in url:
        url = f"http://{url}"
    return url if url.rstrip("/").endswith("/report") else url.rstrip("/") + "/report"


def write_html(report: dict[str, Any], out: Path, source: str, prog: str) -> int:
    """Render `report` into `out` and say where it went; an exit code."""
    from datetime import UTC, datetime

    from agents.core.html import render_html

    page = render_html(report, generated_at=datetime.now(UTC), source=source)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"{prog}: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{prog}: HTML report written to {out.resolve()}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    import orjson

    from streams.drain import fetch

    if args.input is not None:
        source = str(args.input)
        try:
            body = args.input.read_bytes()
        except OSError as exc:
            print(f"livepulse report: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    else:
        source = report_url(args.url)
        try:
            body = fetch(source, timeout_s=60.0)
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            print(f"livepulse report: cannot get {source}: {reason}", file=sys.stderr)
            return 1
    try:
        report = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        print(f"livepulse report: {source} is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(report, dict) or not isinstance(report.get("claims"), dict):
        print(f"livepulse report: {source} is not a claims report", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
    else:
        from agents.core import render_table

        print(render_table(report))
    if args.html is not None:
        return write_html(report, args.html, source, "livepulse report")
    return 0
