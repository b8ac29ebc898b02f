import pytest

from services.common import units


def test_mass_units_convert_exactly():
    assert units.convert(200, "jin", "kg") == 100
    assert units.convert(0.1, "t", "jin") == 200
    assert units.to_milli(1, "t") == units.to_milli(2000, "jin")


def test_integer_milli_units_avoid_float_drift():
    total = sum(units.to_milli(0.1, "kg") for _ in range(10))
    assert total == units.to_milli(1, "kg")


def test_different_dimensions_do_not_convert():
    assert not units.compatible("kg", "piece")
    with pytest.raises(units.UnitMismatch):
        units.convert(1, "box", "piece")
