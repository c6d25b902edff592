"""schemathesis against the gateway's own /openapi.json, over real HTTP, on both configurations.

With a valid agency credential (H41, whose inbox holds a document, and which has sent one), every
operation is called with generated parameters and bodies: no answer is a 5xx, every answer (status,
content type, headers, body) matches what the document declares, and every operation refuses a request
without the credential (schemathesis's `ignored_auth` check). The auditor's operations (/v1/audit/*), which
answer an agency 403, are exercised a second time with the auditor's credential. That every operation also
answers 2xx is
shown by tests/gateway/test_exchange.py (a generated axis id is never a real one, so fetch, ack and
fail answer 404 here, as declared).
"""
from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.gateway.support import G22, H41, ServedGateway

# schemathesis's own pytest loader (`from_fixture`) does not run under pytest 9 (it reads a private
# attribute pytest no longer has), so each operation's strategy is driven by hypothesis here.
EXAMPLES = 40
# Valid data, then invalid data (wrong types, out of range, missing parameters): no 5xx either way.
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def _takes_text(schema: dict) -> bool:
    """Whether a parameter's schema takes a string, or a list of strings."""
    kinds = [schema, *schema.get("anyOf", [])]
    return any(k.get("type") == "string" or (k.get("type") == "array" and k.get("items", {}).get("type") == "string")
               for k in kinds)


def _text_parameters(document: dict) -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) -> the names of its query parameters that take text."""
    return {(method.upper(), path): {p["name"] for p in spec.get("parameters", [])
                                     if p["in"] == "query" and _takes_text(p.get("schema", {}))}
            for path, methods in document["paths"].items() for method, spec in methods.items()}


def _beyond_the_schema(case, text: set[str]) -> list:
    """The checks a generated request cannot pass for reasons no OpenAPI schema can state.

    "Schema-valid data is accepted" (ST202) does not hold for a generated `after` cursor, a `since`, `until`
    or `as_of` time, or an `agency` code (opaque, not ISO 8601, not a valid code: 422 GW422). "Schema-violating
    data is rejected" (ST201) cannot hold for a query parameter generated with no value (null, an empty list:
    `{"limit": 1, "": []}`): nothing of it goes on the wire, so the server never sees what to reject; nor for
    a number or a boolean generated for a parameter `text` names (one that takes text): on the wire it is the
    text `0.0` or `true`, which such a parameter may well take (`?kind=0.0` is a valid action name). (Bytes
    generated as "a binary string" are never a signed edXML packet, but their refusal is an outcome: 200,
    "refused".)
    """
    query = case.query or {}
    excluded = []
    if {"after", "since", "until", "as_of", "agency"} & set(query):
        excluded.append(positive_data_acceptance)
    if any(value is None or value == [] for value in query.values()) or any(
            name in text and any(isinstance(v, int | float) for v in (value if isinstance(value, list) else [value]))
            for name, value in query.items()):
        excluded.append(negative_data_rejection)
    return excluded


def _exercise(operation, mode, url: str, headers: dict[str, str], text: set[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)  # the same cases every run: CI never meets a case no one saw
    def check(case) -> None:
        wait = (case.query or {}).get("wait")
        if isinstance(wait, int | float) and 0.2 < wait <= 60:
            case.query["wait"] = 0.2  # a long poll may hold up to 60 s: keep it short (invalid values stay)
        case.call_and_validate(base_url=url, headers=headers, excluded_checks=_beyond_the_schema(case, text))

    check()


@pytest.mark.slow(seconds=40)  # hundreds of generated requests
def test_every_operation_keeps_its_contract(module_gateway: ServedGateway) -> None:
    module_gateway.send(G22, [H41])           # something in H41's inbox
    module_gateway.send(H41, [G22])           # something in H41's sent list
    module_gateway.wait_inbox(H41, 1)
    schema = schemathesis.openapi.from_url(f"{module_gateway.url}/openapi.json")
    agency = {"Authorization": f"Bearer {module_gateway.tokens[H41]}"}
    auditor = {"Authorization": f"Bearer {module_gateway.tokens['auditor']}"}
    text = _text_parameters(schema.raw_schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: dict[str, str] = {}
    for operation, mode in itertools.product(operations, MODES):
        callers = {"agency": agency, **({"auditor": auditor} if operation.path.startswith("/v1/audit/") else {})}
        for who, headers in callers.items():
            try:
                _exercise(operation, mode, module_gateway.url, headers,
                          text[(operation.method.upper(), operation.path)])
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label  # nothing to get wrong
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation is tried; all reported
                failures[f"{operation.label} ({mode.value} data, {who})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
