"""`bench.quiet_topics`: a partition fed no order holds every owner's rows back without its
follow and none with it (bench/RESULTS.md, "Session 20 (issue 17)")."""

from __future__ import annotations

import json

import pytest

from bench.quiet_topics import main


def test_the_quiet_partition_announces_only_with_its_follow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--days", "75", "--scale", "0.3"])
    without, with_ = json.loads(capsys.readouterr().out)["runs"]
    assert not without["follow"] and with_["follow"]
    assert without["announced_refunds"][2] == "" != without["announced_refunds"][0]
    assert without["owner_refund_rows_held"] > 0 and without["owner_periods_folded"] == 0
    assert len(set(with_["announced_refunds"])) == 1 and with_["announced_refunds"][0]
    assert all(
        f >= r for f, r in zip(with_["announced_first"], with_["announced_refunds"], strict=True)
    )
    assert with_["owner_rows_held"] == 0 and with_["owner_periods_folded"] > 0
    assert with_["expired_at_quiet"] == 0
