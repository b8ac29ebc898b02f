"""The one rule for the value a part of a lot carries: cumulative shares that add up to the
lot's value to the fen, whatever the sizes and order of the takes."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import money, units
from services.donations.service import share_fen as donations_share_fen
from services.matching.store import take_value

DISINFECTANT_MILLI = units.to_milli(5728, "jin")
DISINFECTANT_FEN = money.to_fen(4_850_000)
# the seed's 79 community needs: 40 of 73 jin and 39 of 72 jin, 5,728 jin in all
SEED_NEEDS = [73] * 40 + [72] * 39


def take_all(total_milli, total_fen, takes):
    """Every take through the rule, as matching books them; returns the shares (fen)."""
    taken_milli = taken_fen = 0
    shares = []
    for milli in takes:
        share = money.share_fen(total_milli, total_fen, taken_milli, taken_fen, milli)
        shares.append(share)
        taken_milli += milli
        taken_fen += share
    return shares


def test_yuan_and_fen_convert_exactly_half_to_even():
    assert money.to_fen(4_850_000) == 485_000_000
    assert money.to_fen(0.29) == 29 and money.to_fen(1.15) == 115
    assert money.to_fen(2.675) == 268  # its decimal text, not the float just below it
    assert money.to_fen(0.125) == 12 and money.to_fen(0.135) == 14
    assert money.to_fen("829.27") == money.to_fen(Decimal("829.27")) == 82927
    assert money.to_yuan(485_000_000) == 4_850_000.0 and money.to_yuan(31) == 0.31


def test_value_of_rounds_half_to_even_and_the_whole_lot_is_its_value():
    assert money.value_of(5, 2, 1) == 2  # 2.5 -> 2
    assert money.value_of(7, 2, 1) == 4  # 3.5 -> 4
    assert money.value_of(10, 3, 1) == 3 and money.value_of(10, 3, 2) == 7
    assert money.value_of(DISINFECTANT_FEN, DISINFECTANT_MILLI, DISINFECTANT_MILLI) == \
        DISINFECTANT_FEN
    assert money.value_of(100, 0, 0) == 0


def test_the_seed_disinfectant_lot_given_to_79_needs_adds_up_to_its_value():
    takes = [units.to_milli(q, "jin") for q in SEED_NEEDS]
    assert sum(takes) == DISINFECTANT_MILLI
    # each share rounded alone, as before: 0.31 yuan more than the lot is worth
    alone = sum(money.to_fen(round(4_850_000 * t / DISINFECTANT_MILLI, 2)) for t in takes)
    assert alone == DISINFECTANT_FEN + 31
    shares = take_all(DISINFECTANT_MILLI, DISINFECTANT_FEN, takes)
    assert sum(shares) == DISINFECTANT_FEN
    assert money.to_yuan(sum(shares)) == 4_850_000.00
    assert set(shares[:40]) <= {6_181_040, 6_181_041}  # 61,810.4050... yuan each
    assert set(shares[40:]) <= {6_096_368, 6_096_369}  # 60,963.6871... yuan each


lots = st.tuples(st.integers(1, 10**10), st.integers(0, 10**11))


@st.composite
def lot_and_takes(draw):
    """A lot and a sequence of takes (some of them empty) that empties it."""
    total_milli, total_fen = draw(lots)
    cuts = draw(st.lists(st.integers(0, total_milli), max_size=60))
    points = sorted([0, *cuts, total_milli])
    return total_milli, total_fen, [b - a for a, b in zip(points, points[1:], strict=False)]


@given(lot_and_takes())
def test_any_takes_that_empty_a_lot_add_up_to_its_value_and_none_is_negative(case):
    total_milli, total_fen, takes = case
    shares = take_all(total_milli, total_fen, takes)
    assert sum(shares) == total_fen
    assert all(s >= 0 for s in shares)
    for milli, share in zip(takes, shares, strict=True):
        # within a fen of the exact proportional share
        assert abs(share * total_milli - total_fen * milli) <= total_milli
        if milli == 0:
            assert share == 0


@given(lot_and_takes())
def test_after_every_take_the_value_gone_is_the_rules_value_of_the_quantity_gone(case):
    total_milli, total_fen, takes = case
    gone_milli = gone_fen = 0
    for milli, share in zip(takes, take_all(total_milli, total_fen, takes), strict=True):
        gone_milli += milli
        gone_fen += share
        assert gone_fen == money.value_of(total_fen, total_milli, gone_milli)


@given(lots, st.integers(0, 10**12), st.data())
def test_a_history_booked_another_way_never_gets_a_negative_or_excess_share(lot, taken_fen,
                                                                           data):
    total_milli, total_fen = lot
    taken_milli = data.draw(st.integers(0, total_milli))
    milli = data.draw(st.integers(0, total_milli - taken_milli))
    share = money.share_fen(total_milli, total_fen, taken_milli, taken_fen, milli)
    assert 0 <= share <= max(0, total_fen - taken_fen)
    if taken_milli + milli == total_milli and milli and taken_fen <= total_fen:
        assert share == total_fen - taken_fen  # the last take carries what is left


def test_a_take_beyond_the_lot_or_negative_is_refused():
    with pytest.raises(ValueError):
        money.share_fen(10, 100, 8, 80, 3)
    with pytest.raises(ValueError):
        money.share_fen(10, 100, 0, 0, -1)


def test_matching_books_allocations_and_withdrawals_of_a_lot_by_the_rule():
    lot = {"quantity": DISINFECTANT_MILLI, "available": DISINFECTANT_MILLI,
           "value_yuan": 4_850_000, "taken_fen": 0}
    total = 0
    for q in SEED_NEEDS:
        milli = units.to_milli(q, "jin")
        share, taken = take_value(lot, milli)
        lot["available"] -= milli
        lot["taken_fen"] = taken
        total += share
    assert (lot["available"], lot["taken_fen"], total) == (0, DISINFECTANT_FEN,
                                                            DISINFECTANT_FEN)


def test_a_lot_recorded_before_values_were_kept_starts_from_the_rules_value():
    # 1,000 kg worth 4,146.34 yuan, 200 kg of it already gone, no value kept beside it
    lot = {"quantity": 1_000_000, "available": 800_000, "value_yuan": 4146.34}
    share, taken = take_value(lot, 800_000)
    assert (share, taken) == (414_634 - 82_927, 414_634)


def test_donations_books_the_same_share_when_matching_gives_none():
    lot = {"quantity": 1_000_000, "available": 700_000, "value_yuan": 4146.34,
           "allocated": 100_000, "allocated_fen": 41_463, "written_off": 200_000,
           "written_off_fen": 82_927}
    # 300 kg gone, worth 124,390 fen by the rule (124,390.2): the next 100 kg is worth
    # value_of(400 kg) - 124,390 = 165,854 - 124,390
    assert donations_share_fen(lot, 100_000) == 165_854 - 124_390
    assert donations_share_fen(lot, 700_000) == 414_634 - 124_390
