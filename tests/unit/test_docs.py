import yaml

from services.common import contract, docs


def test_docs_match_the_schemas():
    assert docs.main(["--check"]) == 0, "docs/ is stale: run `make docs`"


def test_asyncapi_documents_every_event_and_required_field():
    spec = yaml.safe_load(docs.render()["events.asyncapi.yaml"])
    messages = spec["components"]["messages"]
    assert set(messages) == set(contract.EVENT_SCHEMAS)
    need = messages["need_posted"]["payload"]["properties"]["data"]
    assert {"need_id", "community_id", "kind", "category", "quantity", "unit",
            "urgency"} <= set(need["required"])
    assert need["properties"]["urgency"]["enum"] == list(contract.URGENCIES)
    intake = spec["channels"]["relief.intake"]["publish"]["message"]["oneOf"]
    assert len(intake) == len(contract.INTAKE_TYPES)
