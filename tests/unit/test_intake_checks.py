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
