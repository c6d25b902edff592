"""Seeing the traffic of a running `axis serve`: its log (JSON lines, the rate summary, the stop line),
`axis traffic list|show|tail` and `axis queues`, on both configurations."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from axis import wire
from tests.e2e.harness import AXIS, REPO, Deployment, HubProcess, wait_until
from tests.e2e.packets import G22, H14, H41, H99, TestPKI

EARLY = 3   # queued while no hub runs
BULK = 12
RATE = 3


def serve_json(deployment: Deployment, rate: float) -> HubProcess:
    """`axis serve --log-format json` with AXIS_LOG_RATE=rate."""
    env = {**os.environ, **deployment.env(), "AXIS_LOG_RATE": str(rate)}
    hub = HubProcess(deployment.options(["serve", "--workers", "1", "--log-format", "json"]), env,
                     deployment.data / "logs")
    deployment.hubs.append(hub)
    hub.wait_serving(deployment)
    return hub


def log_lines(hub: HubProcess) -> list[dict]:
    """Every line of the hub's log, each of which must be one JSON object. (After its last line, "axis hub
    stopped", Python's multiprocessing resource tracker, a helper process sharing its stderr, may warn in its
    own words: that is not the hub's log.)"""
    lines: list[dict] = []
    for line in hub.stderr().splitlines():
        if lines and lines[-1]["message"].startswith("axis hub stopped: "):
            break
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line in the log of axis serve: {line!r}") from None
    return lines


def traffic_events(hub: HubProcess, event: str) -> list[dict]:
    return [line for line in log_lines(hub) if line.get("event") == event]


def at_80_columns(deployment: Deployment, *args: str) -> str:
    """`axis ARGS` as a process on an 80-column terminal; its stdout."""
    env = {**os.environ, **deployment.env(), "COLUMNS": "80"}
    done = subprocess.run([*AXIS, *deployment.options(list(args))], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow(seconds=40)  # two `axis serve` starts' worth: ~25 s embedded, ~40 s on RabbitMQ+PostgreSQL
def test_the_log_the_traffic_commands_and_the_queues_tell_one_story(
        rabbit_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    # On RabbitMQ+PostgreSQL only, for CI's time: the operator guide's test runs these commands and reads the
    # hub's log on the embedded defaults (tests/docs/test_operator_guide.py).
    deployment = rabbit_deployment
    # No hub yet, only its queue: on the operator's own road `axis send` queues, and says so.
    deployment.transport_call(lambda transport: transport.declare_queue(wire.INTAKE_QUEUE))
    early = []
    for number in range(100, 100 + EARLY):
        early.append(tmp_path / f"early-{number}.edxml")
        early[-1].write_bytes(e2e_pki.document(G22, [H41, H14], number))
    garbage = tmp_path / "garbage.edxml"
    garbage.write_bytes(b"not a packet")
    deployment.road = "local"
    queued = deployment.cli("send", str(early[0]), "--wait", "1")
    assert queued.exit_code == 3, queued
    assert queued.lines()[0].split()[1:3] == ["-", "queued"] and "is the hub running?" in queued.stdout
    assert "1 of 1 packets are queued without an answer after 1 s" in queued.stderr
    mixed = deployment.cli("send", str(garbage), str(early[1]), "--wait", "1")
    assert mixed.exit_code == 1, mixed
    assert "1 of 2 packets were not accepted (1 refused, 0 not sent)" in mixed.stderr
    assert "1 of 2 packets are queued" in mixed.stderr
    waiting = deployment.spawn("send", str(early[2]), "--wait", "120", "--json")
    deployment.road = "gateway"

    hub = serve_json(deployment, RATE)
    answered = waiting.finish()
    assert answered.exit_code == 0, answered
    assert json.loads(answered.stdout)[0]["outcome"] == "accepted"
    early_ids = wait_until(lambda: _decided(deployment), "the hub to decide what was queued")
    tail = deployment.spawn("traffic", "tail", "--json", "--interval", "0.1")
    wait_until(lambda: "following the traffic" in tail.stderr(), "traffic tail to start")

    refused = tmp_path / "refused.edxml"
    refused.write_bytes(e2e_pki.document(G22, [H41, H99], 1))
    answer = deployment.cli("send", str(refused), "--json")
    assert answer.exit_code == 1, answer
    [line] = wait_until(lambda: traffic_events(hub, "refused"), "the refusal's log line")
    assert (line["code"], line["name"], line["sender"], line["level"]) == (402, "UNKNOWN_RECIPIENT", G22, "INFO")
    assert "refused submission" in line["message"] and "UNKNOWN_RECIPIENT" in line["message"]

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for number in range(2, 2 + BULK):
        (outbox / f"{number}.edxml").write_bytes(e2e_pki.document(G22, [H41, H14], number))
    sent = deployment.cli("send", str(outbox), "--json")
    assert sent.exit_code == 0, sent
    axis_ids = [r["axis_id"] for r in json.loads(sent.stdout)] + early_ids

    # Above AXIS_LOG_RATE the lines held back are counted in a summary a second: together, every decision.
    def accepted_said() -> int:
        shown = len(traffic_events(hub, "accepted"))
        held = sum(line["held"].get("accepted", 0) for line in traffic_events(hub, "summary"))
        return shown + held if shown + held >= EARLY + BULK else 0
    assert wait_until(accepted_said, "every acceptance in the log, line or summary") == EARLY + BULK
    assert traffic_events(hub, "summary"), "no summary line although the rate was exceeded"
    shown = traffic_events(hub, "accepted")
    assert {line["axis_id"] for line in shown} <= set(axis_ids)
    assert all(sorted(line["recipients"]) == sorted([H14, H41]) for line in shown)

    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(tmp_path / "in"),
                            "--wait", "1", "--max", "1")
    assert pulled.exit_code == 0, pulled
    delivered_id = pulled.lines()[0].split()[0].rsplit("/", 1)[1].removesuffix(".edxml")
    [delivered] = wait_until(lambda: traffic_events(hub, "delivered"), "the delivery's log line")
    assert (delivered["axis_id"], delivered["recipient"], delivered["state"]) == (delivered_id, H41, "delivered")

    # axis traffic list: newest first, each document with its deliveries' states; filters; refused submissions.
    listed = json.loads(deployment.cli("traffic", "list", "--json").stdout)
    assert sorted(d["axis_id"] for d in listed) == sorted(axis_ids)
    assert [d["received_at"] for d in listed] == sorted((d["received_at"] for d in listed), reverse=True)
    assert all({x["recipient"]: x["state"] for x in d["deliveries"]}
               == {H41: "delivered" if d["axis_id"] == delivered_id else "queued", H14: "queued"} for d in listed)
    only = json.loads(deployment.cli("traffic", "list", "--to", H41, "--state", "delivered", "--json").stdout)
    assert [d["axis_id"] for d in only] == [delivered_id]
    assert json.loads(deployment.cli("traffic", "list", "--from", H41, "--json").stdout) == []
    assert len(json.loads(deployment.cli("traffic", "list", "--limit", "2", "--json").stdout)) == 2
    [refusal] = json.loads(deployment.cli("traffic", "list", "--refused", "--json").stdout)
    assert (refusal["agency"], refusal["code"], refusal["name"]) == (G22, 402, "UNKNOWN_RECIPIENT"), refusal
    assert H99 in refusal["detail"]

    # axis traffic show, by the end of the axis id the table prints.
    table = at_80_columns(deployment, "traffic", "list")
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert "…" + delivered_id[-12:] in table and f"{H41} delivered" in table
    shown_doc = json.loads(deployment.cli("traffic", "show", delivered_id[-12:], "--json").stdout)
    assert shown_doc["axis_id"] == delivered_id
    assert {(r["kind"], r["recipient"]) for r in shown_doc["receipts"]} == {("intake", None), ("delivery", H41)}
    text = at_80_columns(deployment, "traffic", "show", delivered_id)
    assert all(len(line) <= 80 for line in text.splitlines()) and "delivery" in text and H14 in text, text
    refused_table = at_80_columns(deployment, "traffic", "list", "--refused")
    assert all(len(line) <= 80 for line in refused_table.splitlines()), refused_table
    assert "AX402  UNKNOWN_RECIPIENT: " in refused_table and f"{G22}" in refused_table, refused_table
    missing = deployment.cli("traffic", "show", "ffffffffffff")
    assert missing.exit_code == 1 and "no document" in missing.stderr and "Traceback" not in missing.stderr

    # axis queues: the hub consumes the intake queue; the store holds what waits for each agency.
    queues = json.loads(deployment.cli("queues", "--json").stdout)
    intake = next(q for q in queues["broker"] if q["queue"] == "axis.intake")
    assert intake["ready"] == 0 and intake["consumers"] >= 1 and intake["dead_letters"] == 0, queues
    assert {r["recipient"]: r["waiting"] for r in queues["deliveries"]} == {H41: len(axis_ids) - 1, H14: len(axis_ids)}
    table = at_80_columns(deployment, "queues")
    assert all(len(line) <= 80 for line in table.splitlines()) and "axis.intake" in table, table

    # axis traffic tail saw every decision and the delivery as they happened, and stops on Ctrl-C.
    def tailed() -> list[dict]:
        events = [json.loads(line) for line in tail.stdout().splitlines() if line.strip()]
        actions = [e["action"] for e in events]
        return events if actions.count("accepted") == BULK and "refused" in actions and "delivered" in actions \
            else []
    events = wait_until(tailed, "traffic tail to print every event")
    assert {e["subject"] for e in events if e["action"] == "accepted"} == set(axis_ids) - set(early_ids)
    tail.process.send_signal(signal.SIGINT)
    assert tail.finish(20).exit_code == 0

    # It says when it stops, and why.
    assert hub.stop() == 0
    assert log_lines(hub)[-1]["message"] == "axis hub stopped: SIGTERM received"


def _decided(deployment: Deployment) -> list[str]:
    """The axis ids of the three documents queued before the hub ran, once it accepted them all."""
    with deployment.store() as store:
        found = [doc for doc, _ in store.traffic(limit=10)]
    return [doc.axis_id for doc in found] if len(found) == EARLY else []
