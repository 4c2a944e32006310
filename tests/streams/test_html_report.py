"""The HTML report of a fixture, rendered by headless Chromium: not blank, every plot drawn."""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.core.html import AFTER_COLOUR, BEFORE_COLOUR, MEMBER_COLOUR, TIER_COLOUR
from streams.cli import main
from streams.tools.analyze import analyze_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "xhs.jsonl"
PLOTS = ("plot-orders-by-minute", "plot-conversion", "plot-watch-price-tier", "plot-watch-members")
WINDOW = (1280, 4000)


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """One headless Chromium run with nothing reaching out to the network."""
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=90,
        check=False,
    )


class Figures(HTMLParser):
    """Per figure id: the tags and classes of every element inside it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.inside: dict[str, list[tuple[str, str]]] = {}
        self._stack: list[tuple[str, str | None]] = []
        self.feed(text)

    def _record(self, tag: str, attrs: dict[str, str | None]) -> None:
        for open_tag, fid in self._stack:
            if open_tag == "figure" and fid:
                self.inside.setdefault(fid, []).append((tag, attrs.get("class") or ""))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self._record(tag, attributes)
        if tag == "figure":
            self.inside.setdefault(attributes.get("id") or "", [])
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self._stack.append((tag, attributes.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.fixture(scope="module")
def fixture_report() -> dict[str, Any]:
    report = analyze_file(FIXTURE)
    # The per-room table is drawn from the report's real operator section.
    assert len(report["operator"]["rooms"]) >= 2
    return report


def test_chromium_renders_every_plot(
    fixture_report: dict[str, Any], tmp_path: Path, chromium: str
) -> None:
    from PIL import Image

    from agents.core.html import render_html

    browser = chromium
    page = tmp_path / "report.html"
    page.write_text(render_html(fixture_report, source=FIXTURE.name), encoding="utf-8")
    png = tmp_path / "report.png"
    shot = headless(
        browser,
        tmp_path / "profile",
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.as_uri(),
    )
    assert png.exists(), shot.stderr.decode(errors="replace")[-2000:]
    dom = headless(browser, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]

    # Not blank: plenty of ink and many colours (text, antialiasing, plot series).
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    assert pixels.shape == (WINDOW[1], WINDOW[0], 3)
    inked = pixels.min(axis=2) < 235
    assert inked.mean() > 0.02
    wide = pixels.astype(np.uint32)
    packed = (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]
    assert len(np.unique(packed)) > 200
    # Each plot's series colour is painted (bars, boxes), not just present in the markup.
    for colour in (AFTER_COLOUR, BEFORE_COLOUR, MEMBER_COLOUR, TIER_COLOUR):
        painted = (pixels == np.array(_rgb(colour), dtype=np.uint8)).all(axis=2).sum()
        assert painted > 100, colour

    figures = Figures(dom.stdout.decode("utf-8")).inside
    for plot in PLOTS:
        inside = figures.get(plot)
        assert inside, f"{plot} missing from the rendered DOM"
        assert ("svg", "") in inside, f"{plot} has no svg"
        drawn = [c for tag, c in inside if tag in ("rect", "path") and c in ("bar", "box")]
        assert drawn, f"{plot} draws no bars or boxes"
    rooms = figures.get("table-rooms", [])
    assert sum(tag == "tr" for tag, _c in rooms) == 1 + len(fixture_report["operator"]["rooms"])


def test_analyze_and_report_write_the_page(
    fixture_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "offline.html"
    assert main(["analyze", str(FIXTURE), "--html", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().err
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(fixture_report), encoding="utf-8")
    again = tmp_path / "saved.html"
    assert main(["report", "--input", str(saved), "--html", str(again)]) == 0
    text = again.read_text(encoding="utf-8")
    assert 'id="plot-orders-by-minute"' in text
    rooms = fixture_report["operator"]["rooms"]
    assert all(f'<td class="id">{room}</td>' in text for room in rooms)

    assert main(["report", "--input", str(tmp_path / "missing.json"), "--html", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["report", "--input", str(saved), "--html", str(tmp_path / "no/dir.html")]) == 1
    assert "cannot write" in capsys.readouterr().err
