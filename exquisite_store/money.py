"""Money as integer micro-dollars: parsing a dollar amount and showing one, exactly."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from exquisite_store.errors import UserError

MICRO = 1_000_000
MAX_BUDGET_USD = 1_000_000


def parse_usd(text: str) -> int:
    """A dollar amount ("2.50", "$2.50") as micro-dollars, exactly; UserError otherwise."""
    try:
        value = Decimal(str(text).strip().lstrip("$"))
    except InvalidOperation:
        raise UserError(f"not a dollar amount: {text!r:.40}") from None
    if not value.is_finite() or value < 0 or value > MAX_BUDGET_USD:
        raise UserError(f"a budget must be between $0 and $1,000,000, not {text!r:.40}")
    return int(value * MICRO)


def format_usd(micro: int | None, none: str = "none") -> str:
    """Micro-dollars as dollars with four decimals (``$1,234.5000``); ``none`` for None."""
    if micro is None:
        return none
    sign = "-" if micro < 0 else ""
    # round half up to 1/10,000 of a dollar in integers: no float rounding surprises
    cents4 = (abs(micro) + 50) // 100
    return f"{sign}${cents4 // 10_000:,}.{cents4 % 10_000:04d}"
