"""Money in exact fen, and the one rule for the value a part of a lot carries.

A lot's value in yuan is fixed at intake; allocations, write-offs and transfers each take a
share of it. Rounding each share to the fen on its own leaves the shares of an emptied lot a
few fen off its value (5,728 jin worth 4,850,000.00 yuan given as 40 x 73 jin and 39 x 72 jin
would add up to 4,850,000.31). So shares are cumulative: the value of everything taken so far
is rounded once, and a take's share is how much that figure grows; the take that empties the
lot carries exactly what is left. Integers throughout, no float sums.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

_FEN = Decimal("0.01")


def to_fen(yuan: float | int | str | Decimal) -> int:
    """Yuan -> integer fen, half to even, from the amount's decimal text (0.29 -> 29)."""
    return int(Decimal(str(yuan)).quantize(_FEN, rounding=ROUND_HALF_EVEN).scaleb(2))


def to_yuan(fen: int) -> float:
    """Integer fen -> yuan as events and answers carry them (2 decimals, exact text)."""
    return round(fen / 100, 2)


def _div_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)  # denominator > 0: 0 <= remainder
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def value_of(total_fen: int, total_milli: int, milli: int) -> int:
    """The value of ``milli`` of a lot of ``total_milli`` worth ``total_fen``, rounded half to
    even to the fen; the whole lot is worth exactly ``total_fen``."""
    if total_milli <= 0:
        return 0
    return _div_half_even(total_fen * milli, total_milli)


def share_fen(total_milli: int, total_fen: int, taken_milli: int, taken_fen: int,
              milli: int) -> int:
    """The value, in fen, of taking ``milli`` out of a lot.

    ``total_milli`` and ``total_fen`` are the lot's quantity and value at intake;
    ``taken_milli`` and ``taken_fen`` what has already left it (allocated, written off,
    transferred), in quantity and in value. The share is
    ``value_of(taken_milli + milli) - taken_fen``, and the take that empties the lot gets
    exactly ``total_fen - taken_fen``: when every take of a lot goes through this rule, the
    shares add up to its value to the fen, whatever their sizes and order. Never negative,
    never more than what is left (a history booked some other way is not made worse).
    """
    if milli < 0:
        raise ValueError(f"a take of {milli} milli-units is negative")
    if milli == 0:
        return 0
    after = taken_milli + milli
    if after > total_milli:
        raise ValueError(f"taking {milli} after {taken_milli} of {total_milli} milli-units "
                         "is more than the lot holds")
    left = total_fen - taken_fen
    share = left if after == total_milli else value_of(total_fen, total_milli, after) - taken_fen
    return max(0, min(share, left))
