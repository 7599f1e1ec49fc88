"""The byte-stream splitter: chunks of any size, truncation, noise, bounded memory."""

from __future__ import annotations

from drivers.emulators.p1_writer import P1Fault, TelegramValues, apply_fault, build_telegram
from drivers.p1.framing import TelegramFramer
from tests.p1.conftest import T0
from tests.p1.telegrams import TELEGRAM_V2_2, TELEGRAM_V5


def telegram(import_w: float = 1193.0) -> bytes:
    return build_telegram(TelegramValues(timestamp_s=T0, grid_import_w=import_w))


def feed_in_chunks(framer: TelegramFramer, data: bytes, size: int) -> tuple[list[bytes], int]:
    telegrams, truncated = [], 0
    for i in range(0, len(data), size):
        result = framer.feed(data[i:i + size])
        telegrams += result.telegrams
        truncated += result.truncated
    return telegrams, truncated


def test_whole_telegrams_come_out_unchanged():
    stream = telegram(1.0) + telegram(2.0) + TELEGRAM_V5.encode()
    result = TelegramFramer().feed(stream)
    assert result.telegrams == [telegram(1.0), telegram(2.0), TELEGRAM_V5.encode()]
    assert (result.truncated, result.discarded_bytes) == (0, 0)


def test_chunks_of_any_size_give_the_same_telegrams():
    stream = telegram(1.0) + telegram(2.0) + TELEGRAM_V2_2.encode()
    for size in (1, 2, 7, 37, 64, 1000):
        telegrams, truncated = feed_in_chunks(TelegramFramer(), stream, size)
        assert telegrams == [telegram(1.0), telegram(2.0), TELEGRAM_V2_2.encode()], size
        assert truncated == 0


def test_joining_mid_telegram_drops_the_tail_silently():
    full = telegram()
    result = TelegramFramer().feed(full[300:] + full)
    assert result.telegrams == [full]
    assert result.truncated == 0
    assert result.discarded_bytes == len(full) - 300


def test_new_start_before_the_end_counts_one_truncated():
    cut = apply_fault(telegram(1.0), P1Fault.TRUNCATE)
    telegrams, truncated = feed_in_chunks(TelegramFramer(), cut + telegram(2.0), 37)
    assert telegrams == [telegram(2.0)]
    assert truncated == 1


def test_crc_line_cut_off_counts_truncated():
    full = telegram(1.0)
    cut = full[: full.rindex(b"!") + 3]  # "!" and two CRC digits, then the next telegram
    result = TelegramFramer().feed(cut + telegram(2.0))
    assert result.telegrams == [telegram(2.0)]
    assert result.truncated == 1


def test_garbage_after_the_bang_is_not_a_crc_line():
    result = TelegramFramer().feed(b"/X\r\n1-0:1.7.0(01.000*kW)\r\n!" + b"Z" * 40 + b"\r\n" + telegram())
    assert result.telegrams == [telegram()]
    assert result.truncated == 1


def test_buffer_stays_bounded_without_a_telegram():
    framer = TelegramFramer(max_telegram_bytes=4096)
    noise = bytes(range(256)).replace(b"/", b"").replace(b"!", b"") * 40
    for _ in range(50):  # ~500 kB of noise without a start
        framer.feed(noise)
        assert framer.buffered_bytes == 0
    truncated = 0
    framer.feed(b"/")
    for _ in range(50):  # ~500 kB after a start but without an end
        truncated += framer.feed(noise).truncated
        assert framer.buffered_bytes <= 4096
    assert truncated >= 1
    result = framer.feed(telegram())
    assert result.telegrams == [telegram()]


def test_reset_forgets_a_half_telegram():
    framer = TelegramFramer()
    framer.feed(telegram()[:500])
    framer.reset()
    assert framer.buffered_bytes == 0
    assert framer.feed(telegram()[500:]).telegrams == []
