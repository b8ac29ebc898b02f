import pytest

from services.common import contract, reference
from services.intake.checks import check_references
from tests.support import envelope

REF = reference.load("deploy/reference")


def need(**over):
    data = {"need_id": "N1", "community_id": "QY-S01-C01", "kind": "goods",
            "category": "vegetables", "quantity": 200, "unit": "jin", "urgency": "normal"}
    data.update(over)
    return contract.parse(envelope("need_posted", data))


def test_known_references_pass():
    check_references(need(), REF)


@pytest.mark.parametrize("over, field", [
    ({"community_id": "QY-S99-C01"}, "data.community_id"),
    ({"community_id": "QY-S01"}, "data.community_id"),  # a street is not a community
    ({"category": "caviar"}, "data.category"),
    ({"unit": "piece"}, "data.unit"),
    ({"kind": "service"}, "data.kind"),
])
def test_unknown_references_are_contract_errors(over, field):
    with pytest.raises(contract.ContractError) as info:
        check_references(need(**over), REF)
    assert field in info.value.fields


def donation(**over):
    data = {"donation_id": "D1", "donor": {"name": "某公司", "kind": "company"},
            "location_id": "QY-S01", "category": "masks", "quantity": 10, "unit": "box",
            "value_yuan": 1000}
    data.update(over)
    return contract.parse(envelope("donation_received", data))


def test_boxes_of_goods_counted_in_pieces_pass_when_a_box_is_declared():
    check_references(donation(box_size=50, box_unit="piece"), REF)
    # goods counted in boxes need no declaration; one is kept as information
    check_references(donation(category="medicine"), REF)
    check_references(donation(category="medicine", box_size=20, box_unit="piece"), REF)


@pytest.mark.parametrize("over, field, words", [
    ({}, "data.unit", "declare what one box holds"),
    ({"box_size": 2, "box_unit": "kg"}, "data.box_unit", "does not measure"),
])
def test_undeclared_or_mismeasured_boxes_are_contract_errors(over, field, words):
    with pytest.raises(contract.ContractError) as info:
        check_references(donation(**over), REF)
    assert words in info.value.fields[field]


@pytest.mark.parametrize("over, field", [
    ({"box_size": 50}, "box_unit"),
    ({"box_unit": "piece"}, "box_size"),
    ({"box_size": 50, "box_unit": "box"}, "box_unit"),
    ({"unit": "piece", "box_size": 50, "box_unit": "piece"}, "box_size"),
    ({"box_size": 0, "box_unit": "piece"}, "box_size"),
])
def test_the_contract_checks_a_box_declaration(over, field):
    with pytest.raises(contract.ContractError) as info:
        donation(**over)
    assert field in info.value.fields["data"], info.value.fields
