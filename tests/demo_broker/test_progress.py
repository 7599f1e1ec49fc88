"""The progress bar and board: plain lines for logs, one redrawn line on a terminal, with a fake clock."""

from __future__ import annotations

import io
import threading

import pytest

from hems.demo.progress import ProgressBar, ProgressBoard


class FakeClock:
    """Real time that moves only when the test says so."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    @property
    def screen(self) -> str:
        """What the terminal shows on its last line (what follows the last carriage return)."""
        return self.getvalue().rsplit("\r", 1)[-1]


def test_a_log_gets_a_plain_line_per_tenth_of_progress() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(3600.0, "trading", stream, width_chars=10, clock=clock)
    for done_s in range(0, 3601, 36):  # a hundred updates
        clock.now_s += 0.5
        bar.update(done_s, f"sim {done_s // 60:02d} min")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and stream.getvalue().endswith("\n")
    assert [line.split()[1] for line in lines] == [f"{percent}%" for percent in range(0, 101, 10)]
    assert lines[5] == "trading  50% [#####-----]  25.5 s sim 30 min"
    assert lines[-1] == "trading 100% [##########]  50.5 s sim 60 min"  # close() adds no second 100 %


def test_close_in_a_log_prints_where_progress_stopped() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(10.0, "no market", stream, width_chars=4, clock=clock)
    bar.update(2.0)
    bar.update(4.5, "half")
    clock.now_s += 3.0
    bar.close()
    bar.close()
    bar.update(10.0)  # after close: nothing
    assert stream.getvalue().splitlines() == ["no market  20% [#---]   0.0 s",
                                              "no market  45% [##--]   0.0 s half",
                                              "no market  45% [##--]   3.0 s half"]  # close()


def test_a_terminal_redraws_one_line_at_most_ten_times_a_second() -> None:
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(100.0, "sim", stream, width_chars=10, clock=clock)
    for done in range(50):  # fifty updates within 49 ms
        bar.update(done)
        clock.now_s += 0.001
    assert stream.getvalue().count("\r") == 1  # only the first
    assert stream.screen == "sim   0% [----------]   0.0 s"
    clock.now_s += 0.1
    bar.update(60.0, "sim 14:15, 10 homes")
    assert stream.getvalue().count("\r") == 2
    assert stream.screen == "sim  60% [######----]   0.1 s sim 14:15, 10 homes"
    bar.update(70.0)  # too soon: not drawn, but close() shows it
    clock.now_s += 0.01
    bar.close()
    assert "\n" not in stream.getvalue()[:-1] and stream.getvalue().endswith("\n")
    assert stream.screen == "sim  70% [#######---]   0.2 s                    \n"  # wiped the longer line


def test_done_is_clamped_to_the_total() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10.0, "x", stream, width_chars=2, clock=FakeClock())
    bar.update(-5.0)
    assert bar.fraction == 0.0
    bar.update(25.0)
    assert bar.fraction == 1.0
    assert stream.getvalue().splitlines()[-1].startswith("x 100% [##]")


@pytest.mark.parametrize("total", [0.0, -1.0, float("nan"), float("inf")])
def test_a_total_must_be_positive_and_finite(total: float) -> None:
    with pytest.raises(ValueError, match="total"):
        ProgressBar(total, "x", io.StringIO())


def test_the_default_stream_is_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar(1.0, "demo")
    bar.update(1.0)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("demo 100%")


def test_a_board_shows_every_run_and_their_mean() -> None:
    stream, clock = io.StringIO(), FakeClock()
    board = ProgressBoard(["trading", "no market"], stream, width_chars=8, clock=clock)
    board.update("trading", 0.5, "sim 12:00")
    clock.now_s += 2.0
    board.update("no market", 0.25)
    board.update("trading", 1.0, "sim 23:45")
    board.update("no market", 1.0, "sim 23:45")
    board.close()
    assert stream.getvalue().splitlines() == [
        " 25% [##------]   0.0 s trading 50% (sim 12:00) | no market 0%",
        " 38% [###-----]   2.0 s trading 50% (sim 12:00) | no market 25%",
        " 62% [#####---]   2.0 s trading 100% (sim 23:45) | no market 25%",
        "100% [########]   2.0 s trading 100% (sim 23:45) | no market 100% (sim 23:45)",
    ]


def test_a_board_on_a_terminal_is_one_line() -> None:
    stream, clock = FakeTerminal(), FakeClock()
    board = ProgressBoard(["a", "b"], stream, width_chars=4, clock=clock)
    for step in range(1, 11):
        clock.now_s += 0.2
        board.update("a", step / 10)
        board.update("b", step / 20)
    board.close()
    assert stream.getvalue().count("\n") == 1
    assert stream.screen == " 75% [###-]   2.0 s a 100% | b 50%\n"


def test_a_board_refuses_unknown_and_repeated_labels() -> None:
    board = ProgressBoard(["trading"], io.StringIO())
    with pytest.raises(KeyError, match="'mpc'"):
        board.update("mpc", 0.5)
    with pytest.raises(ValueError, match="distinct"):
        ProgressBoard(["a", "a"], io.StringIO())
    with pytest.raises(ValueError, match="at least one"):
        ProgressBoard([], io.StringIO())


def test_concurrent_reporters_share_a_board() -> None:
    stream = io.StringIO()
    labels = [f"run-{index}" for index in range(4)]
    board = ProgressBoard(labels, stream, clock=FakeClock())

    def report(label: str) -> None:
        for step in range(1, 1001):
            board.update(label, step / 1000)

    threads = [threading.Thread(target=report, args=(label,)) for label in labels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    board.close()
    lines = stream.getvalue().splitlines()
    percents = [int(line.split("%")[0]) for line in lines]
    assert percents == sorted(percents) and len(lines) <= 11  # one line per tenth at most, in order
    assert lines[-1].startswith("100%") and lines[-1].endswith(" | ".join(f"{label} 100%" for label in labels))
