"""``hems demo``'s command line: bad arguments are refused up front, each naming its option and
the allowed values, before anything starts (the demo itself runs in tests/e2e/test_demo.py)."""

from __future__ import annotations

import pytest

from hems.cli import main


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--homes", "0"], "--homes 0: allowed 1 to 1000"),
    (["--hours", "0.1"], "--hours 0.1: allowed 0.25 to 336"),
    (["--mechanism", "barter"], "--mechanism barter: allowed uniform_auction, pay_as_bid, bid_curve"),
    (["--broker", "http://127.0.0.1:1883"], "--broker: the scheme must be mqtt:// or mqtts://"),
])
def test_bad_arguments_are_refused_with_the_allowed_range(arguments: list[str], expected: str, tmp_path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "report"), *arguments]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "report").exists()  # nothing started, nothing written
