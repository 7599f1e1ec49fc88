"""Integer units on the wire and in the ledger.

Energy is whole Wh, prices are micro-currency per kWh (µ¤/kWh) and money is nano-currency (n¤):
Wh × µ¤/kWh = 10⁻³ kWh × 10⁻⁶ ¤/kWh = 10⁻⁹ ¤, so every amount is an exact integer and the books
balance without binary floating point.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

MICRO_PER_UNIT = 1_000_000
NANO_PER_UNIT = 1_000_000_000


def price_to_micro(price_per_kwh: float | Decimal | str) -> int:
    """Currency per kWh -> integer µ¤/kWh, rounded half-even."""
    return int((Decimal(str(price_per_kwh)) * MICRO_PER_UNIT).to_integral_value(ROUND_HALF_EVEN))


def micro_to_price(price_micro_per_kwh: int) -> float:
    """Integer µ¤/kWh -> currency per kWh (for display and the MPC, never for the books)."""
    return price_micro_per_kwh / MICRO_PER_UNIT


def round_half_even(value: Fraction | Decimal | float) -> int:
    """The nearest integer, ties to even (exact for Fraction and Decimal)."""
    if isinstance(value, Fraction):
        floor = value.numerator // value.denominator
        remainder = value - floor
        if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and floor % 2 == 1):
            return floor + 1
        return floor
    return int(Decimal(str(value)).to_integral_value(ROUND_HALF_EVEN))


def money_nano(energy_wh: int, price_micro_per_kwh: int) -> int:
    """The exact amount in n¤ for ``energy_wh`` at ``price_micro_per_kwh``."""
    return int(energy_wh) * int(price_micro_per_kwh)


def nano_to_decimal(amount_nano: int) -> Decimal:
    """n¤ -> currency as an exact Decimal (for statements and JSON as a decimal string)."""
    return Decimal(amount_nano).scaleb(-9)


def format_money(amount_nano: int, places: int = 2) -> str:
    """n¤ -> a currency string rounded half-even to ``places`` decimals (display only)."""
    return str(nano_to_decimal(amount_nano).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN))
