"""The running gateway, fuzzed from its published contract (``docs/http.openapi.yaml``).

For every documented operation Schemathesis generates requests, ones the document allows and
ones it says are invalid, and each answer is checked: never a server error, only the statuses
the document lists, the content types and headers it names, bodies that fit its schemas. A
failure prints the request as a curl command; the gateway's log (with the traceback of a
500) is in the test data folder (``RELIEF_KEEP_TEST_DATA=1`` keeps it).

Schemathesis's own pytest integration is not used (it reaches into pytest internals that
pytest 9.2 changed): each operation is a plain parametrized test running a Hypothesis test
over the operation's strategies.
"""

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from services import docs
from services.common.topology import consumer_specs
from tests.support import System, eventually

# Examples per operation: about 40 operations, so that the module stays near a minute on two
# cores (the system's start-up included).
EXAMPLES = 20
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
TOKEN = {"Authorization": f"Bearer {System.TOKEN}"}


def load(security_parameters: bool) -> dict[str, Any]:
    """The operations by label; ``security_parameters``: generate the Authorization header
    too (wrong tokens, none, any Latin-1 text: what an HTTP header can carry), instead of
    sending the operator's."""
    generation: dict[str, Any] = {"with-security-parameters": security_parameters}
    if security_parameters:
        generation["codec"] = "latin-1"
    schema = schemathesis.openapi.from_path(
        docs.DOCS / "http.openapi.yaml", config=schemathesis.Config.from_dict({
            "request-timeout": 30, "generation": generation}))
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


WITH_TOKEN, WITH_ANY_TOKEN = load(False), load(True)


@pytest.mark.parametrize("label", list(WITH_TOKEN))
def test_the_gateway_answers_generated_requests_as_documented(system, label):
    """Valid and invalid parameters and bodies with the operator's token, and requests whose
    Authorization header is generated too."""
    with_token, with_any_token = WITH_TOKEN[label], WITH_ANY_TOKEN[label]
    cases = st.one_of(
        st.tuples(with_token.as_strategy(GenerationMode.POSITIVE), st.just(TOKEN)),
        st.tuples(with_token.as_strategy(GenerationMode.NEGATIVE), st.just(TOKEN)),
        st.tuples(with_any_token.as_strategy(GenerationMode.NEGATIVE), st.just({})))

    @given(cases)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def answers_as_documented(generated):
        case, headers = generated
        case.call_and_validate(base_url=system.url, checks=CHECKS, headers=headers)

    answers_as_documented()


def test_what_the_gateway_accepted_the_services_could_handle(system):
    """The requests the fuzzing got accepted became events every consumer handled: once the
    queues are drained, no dead letter. (Runs after the fuzzing, in the same system.)"""
    specs = consumer_specs()

    def drained() -> bool:
        return all(system.space.queue_depth(spec.name) == 0 for spec in specs)

    eventually(drained, timeout=60, what="every queue drained")
    time.sleep(2)  # what a consumer still holds: handled, retried or dead-lettered by now
    eventually(drained, timeout=60, what="every queue drained")
    dead = {spec.dlq: [headers.get("x-relief-error") for headers, _ in
                       system.space.get_messages(spec.dlq, limit=3)]
            for spec in specs if system.space.queue_depth(spec.dlq)}
    assert dead == {}
