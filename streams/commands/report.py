"""`livepulse report`: a running worker's claims report, as a table, its JSON or an HTML page."""

from __future__ import annotations

import argparse
import sys
import urllib.error
from pathlib import Path
from typing import Any

from streams.commands import options
from streams.commands.options import one_line

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
    source.add_argument(
        "--changelog",
        action="store_true",
        help="the report over every partition, merged from the workers' state snapshots in "
        "the changelog topic (whatever the number of workers), instead of one worker's",
    )
    p.add_argument(
        "--wait",
        type=options.non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="with --changelog: wait up to this long for the snapshots to cover every record "
        "in the topics (default 0: as they are)",
    )
    p.add_argument("--bootstrap", help="with --changelog: the broker (default: settings)")
    p.add_argument("--app-id", help="with --changelog: the workers' app id (default: settings)")
    p.add_argument("--topic-prefix", help="with --changelog: the topics' prefix")
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


def _from_changelog(args: argparse.Namespace) -> tuple[int, bytes | None, str]:
    import asyncio

    import orjson
    from pydantic import ValidationError

    from streams.runtime.global_report import global_report
    from streams.runtime.kafka_access import BrokerAccessDenied, check_access
    from streams.runtime.settings import Settings

    overrides = {
        "bootstrap": args.bootstrap,
        "app_id": args.app_id,
        "topic_prefix": args.topic_prefix,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"livepulse report: {options.settings_error(exc)}", file=sys.stderr)
        return 2, None, ""
    source = f"changelog {settings.changelog} at {settings.bootstrap}"
    try:
        asyncio.run(check_access(settings))
        report = asyncio.run(global_report(settings, wait_s=max(0.0, args.wait)))
    except BrokerAccessDenied as exc:
        print(f"livepulse report: {exc}", file=sys.stderr)
        return 2, None, source
    except LookupError as exc:
        print(f"livepulse report: {exc.args[0]}", file=sys.stderr)
        return 1, None, source
    except Exception as exc:
        print(f"livepulse report: cannot read {source}: {one_line(exc)}", file=sys.stderr)
        return 1, None, source
    behind = report["state"]["uncovered_records"]
    if behind:
        print(
            f"livepulse report: the snapshots do not cover {behind} records yet (--wait)",
            file=sys.stderr,
        )
    dump_options = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    return 0, orjson.dumps(report, option=dump_options), source


def run(args: argparse.Namespace) -> int:
    import orjson

    from streams.tools.drain import fetch

    if args.changelog:
        code, body, source = _from_changelog(args)
        if body is None:
            return code
    elif args.input is not None:
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
