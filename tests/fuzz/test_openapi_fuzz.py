"""The JSON API fuzzed from its own OpenAPI document (issue 12): schemathesis against a real server.

Every operation of ``/api/v1/openapi.json`` gets generated requests, valid
(positive) and invalid (negative), as an administrator and as a member, with a
Bearer token, against the application served on 127.0.0.1 from a thread
(``tests/fuzz/harness.py``) with its own copy of the migrated SQLite
database. Each response must not be a 5xx, must have a documented status and
content type and match the documented schema; an invalid request must be
refused (4xx); and the server must log no error or traceback for it.

Nothing is excluded. The operations that would wreck later ones are made
harmless instead: before every case the fuzzer's own account is put back as
it was (a PATCH may deactivate, demote or re-password it; ``/auth/logout``
signs its token out) and a fresh token is issued. Ids in paths are drawn from
the seeded range (1-12) half of the time, so that requests reach real rows
rather than 404 after 404.

Bounded: hypothesis runs derandomized (the same cases every run), without
shrinking, ``EXAMPLES`` positive and ``EXAMPLES`` negative cases per operation
and role (fewer as a member); each operation's failures are collected and
reported together, with a curl line to reproduce each.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from server import keys
from server.live.lifecycle import SessionStatus
from server.views.openapi import openapi_document
from server.views.routes import API
from tests.conftest import make_settings, seed_database
from tests.fuzz.harness import Account, ThreadedServer, add_sessions, copy_database, server_errors


@schemathesis.serializer("application/sdp")
def _sdp(ctx: Any, value: Any) -> bytes:
    """An SDP body as it comes: the document says it is a string; anything else goes as its text."""
    return (value if isinstance(value, str) else repr(value)).encode("utf-8", "surrogatepass")

# Date-times as the document bounds them (years 2000-2199, its pattern), with an offset: hypothesis's own
# span years 1-9999, and the pattern then refused almost all of them (two such fields in a session: an
# operation with no valid case, or none that reaches the handler).
schemathesis.openapi.format("date-time", st.builds(
    lambda moment, minutes: moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2199, 12, 31)),
    st.sampled_from([0, 420, -300, 330])))


# Cases per operation, per generation mode: admin and member.
# Bounded for CI (the whole suite runs in under 15 minutes on 2 cores); the longer fuzz is bench/sdp_fuzz.py.
EXAMPLES = {"admin": 12, "member": 4}
# Path ids drawn from here half of the time: the seeded units, points, users and sessions.
SEEDED_IDS = st.integers(min_value=1, max_value=12)

SCHEMA = schemathesis.openapi.from_dict(openapi_document(API))
OPERATIONS = {operation.label: operation for operation in (result.ok() for result in SCHEMA.get_all_operations())}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

TOTALS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path,
               password_hash: str) -> Iterator[tuple[ThreadedServer, dict[str, Account]]]:
    data_dir = tmp_path_factory.mktemp("openapi-fuzz") / "data"
    copy_database(migrated_sqlite, data_dir)
    # No MP4 job after a fuzzed /end: its transcode would only load the machine.
    server = ThreadedServer(make_settings(data_dir, ice={"addresses": "127.0.0.1"}, recordings={"mp4": False}))
    server.start()
    try:
        seed = server.call(seed_database(server.app[keys.DATABASE], password_hash))
        server.call(add_sessions(server.app, seed.speaker.id, [seed.point_a.id, seed.point_b.id],
                                 [SessionStatus.SCHEDULED, SessionStatus.SCHEDULED, SessionStatus.ENDED,
                                  SessionStatus.CANCELLED]))
        accounts = {role: server.call(server.account(name)) for role, name in
                    (("admin", "admin"), ("member", "member-a"))}
        yield server, accounts
    finally:
        server.stop()
        print(f"\nopenapi fuzz: {sum(TOTALS.values())} requests; by status {dict(sorted(TOTALS.items()))}")


def strategy(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    generated = operation.as_strategy(generation_mode=mode)
    if "{id}" not in operation.path:
        return generated
    # Half the time a path id that exists, so that the handlers get past their 404.
    seeded = SEEDED_IDS.flatmap(lambda id_: operation.as_strategy(generation_mode=mode, path_parameters={"id": id_}))
    return st.one_of(generated, seeded)


def describe(case: Any, response: requests.Response | None, problem: str, base_url: str) -> str:
    curl = case.as_curl_command(headers={"Authorization": "Bearer $TOKEN"}, base_url=base_url)
    status = "no response" if response is None else f"{response.status_code} {response.text[:300]!r}"
    return f"{case.operation.label} [{case.meta.generation.mode.value if case.meta else '?'}]: {problem}\n" \
           f"  -> {status}\n  {curl}"


@pytest.mark.parametrize("role", ["admin", "member"])
@pytest.mark.parametrize("label", list(OPERATIONS))
def test_operation(api_server: tuple[ThreadedServer, dict[str, Account]], label: str, role: str) -> None:
    server, accounts = api_server
    operation = OPERATIONS[label]
    account = accounts[role]
    http = requests.Session()
    failures: list[str] = []
    seen: Counter[str] = Counter()
    started = time.monotonic()

    with server_errors() as errors:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            @settings(max_examples=EXAMPLES[role], deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy(operation, mode))
            def run(case: Any) -> None:
                token = server.call(server.restore(account))
                mark = errors.mark()
                response = None
                try:
                    response = case.call(base_url=server.url, session=http, timeout=30,
                                         headers={"Authorization": f"Bearer {token}"})
                except requests.RequestException as exc:
                    failures.append(describe(case, None, f"the request failed: {exc!r}", server.url))
                    return
                seen[str(response.status_code)] += 1
                try:
                    case.validate_response(response, checks=checks)
                except Exception as exc:  # schemathesis' FailureGroup, one per failing check
                    failures.append(describe(case, response, str(exc).strip()[:1500], server.url))
                for problem in errors.since(mark):
                    failures.append(describe(case, response, f"the server logged:\n{problem}", server.url))

            run()

    TOTALS.update(seen)
    print(f"{label} as {role}: {sum(seen.values())} cases in {time.monotonic() - started:.1f} s, {dict(seen)}")
    assert not failures, f"{len(failures)} failing case(s) of {sum(seen.values())}:\n\n" + "\n\n".join(failures[:8])


# The request side: what the document allows, the validators take ----------------------------------

# 422 detail codes a JSON Schema could have said in advance (a pattern, a maximum, a minLength):
# a valid request per the document refused for one of these means the document says too little.
# (Cross-field rules, such as parent_id depending on level, or an id naming no row, it cannot say.)
EXPRESSIBLE = {"invalid_characters", "too_large", "too_small", "not_integer", "required", "too_short", "too_long",
               "invalid_choice", "invalid_format", "out_of_range", "not_string", "not_boolean", "not_list",
               "not_id_list", "too_many", "unknown_field", "not_datetime", "timezone_required"}
WITH_JSON_BODIES = [label for label, operation in OPERATIONS.items()
                    if "application/json" in str(operation.definition.raw.get("requestBody", {}))]


def test_the_document_says_what_the_validators_refuse(api_server: tuple[ThreadedServer, dict[str, Account]]) -> None:
    """Bodies valid by /api/v1/openapi.json are not refused for a reason the document could have stated.

    One finding, every operation with a JSON body: 30 positive cases each, as an administrator.
    """
    server, accounts = api_server
    http = requests.Session()
    report = []
    for label in WITH_JSON_BODIES:
        operation = OPERATIONS[label]
        refused: Counter[tuple[str, str]] = Counter()
        examples: dict[tuple[str, str], Any] = {}
        runs = Counter[str]()

        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy(operation, GenerationMode.POSITIVE))
        def run(case: Any) -> None:
            token = server.call(server.restore(accounts["admin"]))
            response = case.call(base_url=server.url, session=http, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})
            runs[str(response.status_code)] += 1
            if response.status_code != 422:
                return
            for detail in response.json()["error"].get("details") or []:
                key = (detail.get("field", "?"), detail.get("code", "?"))
                present = isinstance(case.body, dict) and key[0] in case.body and case.body[key[0]] is not None
                # "required" for a field left out may be a rule across fields (parent_id below the top level).
                if key[1] in EXPRESSIBLE and (key[1] != "required" or present):
                    refused[key] += 1
                    examples.setdefault(key, case.body.get(key[0]) if isinstance(case.body, dict) else case.body)

        try:
            run()
        except Unsatisfiable as exc:  # name the operation: hypothesis does not
            raise AssertionError(f"{label}: no positive case could be generated ({exc})") from None
        TOTALS.update(runs)
        if refused:
            report.append(f"{label}: {sum(refused.values())} refusal(s) in {sum(runs.values())} valid cases")
            report += [f"    {field}: {code} x{count}, e.g. {examples[(field, code)]!r:.70}"
                       for (field, code), count in refused.most_common()]
    if report:
        pytest.fail("valid requests by the document, refused by the validators:\n" + "\n".join(report),
                    pytrace=False)
