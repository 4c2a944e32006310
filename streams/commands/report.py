"""`livepulse report`: a running worker's claims report, as a table or as its JSON."""

from __future__ import annotations

import argparse
import sys
import urllib.error

DEFAULT_URL = "http://127.0.0.1:6066/report"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="print a running worker's claims report",
        description="Fetch /report from a running worker and print it as a table (or, with "
        "--json, the JSON exactly as served).",
    )
    p.add_argument(
        "--from",
        dest="url",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"the worker's /report, or its base URL (default {DEFAULT_URL})",
    )
    p.add_argument("--json", action="store_true", help="print the JSON as served")
    p.set_defaults(func=run)


def report_url(url: str) -> str:
    """`url` if it names /report, else its /report (a base URL such as http://host:6066)."""
    if "://" not in url:
        url = f"http://{url}"
    return url if url.rstrip("/").endswith("/report") else url.rstrip("/") + "/report"


def run(args: argparse.Namespace) -> int:
    from streams.drain import fetch

    url = report_url(args.url)
    try:
        body = fetch(url, timeout_s=60.0)
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"livepulse report: cannot get {url}: {reason}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
        return 0
    import orjson

    from agents.core import render_table

    print(render_table(orjson.loads(body)))
    return 0
