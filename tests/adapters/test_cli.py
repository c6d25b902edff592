"""`axis send`, `axis inbox pull`, `axis status send` through typer's CliRunner, on the real transports.

The commands run their own event loop, so these tests are synchronous; the
hub's part is played by `IntakeResponder` (a thread with its own transport)
or by publishing deliveries beforehand.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from axis import wire
from axis.receipt import read_receipt
from cli.agency_side import mount
from tests.adapters.support import (
    G22, H14, H41, DevPKI, HubSide, IntakeResponder, Message, document, run_hub, signed_document,
)


def axis_app() -> typer.Typer:
    app = typer.Typer()
    mount(app)
    return app


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(axis_app(), args, env=env)


def lines(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------- axis send

def test_send_prints_each_packets_intake_outcome_and_exits_1_when_one_is_refused(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    good = [signed_document(dev_pki, G22, [H41], n) for n in (1, 2)]
    (folder / "a.edxml").write_bytes(good[0])
    (folder / "b.edxml").write_bytes(good[1])
    (folder / "c.edxml").write_bytes(good[1].replace(b"2/VPCP", b"3/VPCP"))  # changed after signing
    (folder / "notes.txt").write_text("not a packet; folders are searched for *.edxml only")
    again = tmp_path / "a-again.edxml"
    again.write_bytes(good[0])

    with IntakeResponder(transport_url, dev_pki):
        result = invoke(["send", str(folder), str(again), "--wait", "15"], cli_env)

    assert result.exit_code == 1, result.output
    out = {line.split()[0]: line for line in lines(result)}
    assert set(out) == {str(folder / n) for n in ("a.edxml", "b.edxml", "c.edxml")} | {str(again)}
    assert out[str(folder / "a.edxml")].split()[2] == "accepted"
    assert out[str(folder / "b.edxml")].split()[2] == "accepted"
    assert "refused  AX301 SIGNATURE_INVALID:" in out[str(folder / "c.edxml")]
    assert out[str(again)].split()[1:3] == [out[str(folder / "a.edxml")].split()[1], "duplicate"]
    assert "1 of 4 packets were not accepted" in result.stderr
    receipts = Path(cli_env["AXIS_DATA"]) / "agencies" / G22 / "receipts"
    assert len(list(receipts.glob("intake_*.xml"))) == 4


def test_send_json_reports_every_packet_and_exits_0_when_all_are_accepted(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    files = []
    for n, (sender, recipient) in enumerate(((G22, H41), (H41, G22), (G22, H14))):
        files.append(tmp_path / f"{n}.edxml")
        files[-1].write_bytes(signed_document(dev_pki, sender, [recipient], 40 + n))

    with IntakeResponder(transport_url, dev_pki):
        result = invoke(["send", *map(str, files), "--json"], cli_env)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [str(f) for f in files]
    assert [r["sender"] for r in report] == [G22, H41, G22]
    assert {r["outcome"] for r in report} == {"accepted"} and all(r["axis_id"] for r in report)


def test_send_without_an_intake_receipt_in_time_exits_1(
        cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    packet = tmp_path / "p.edxml"
    packet.write_bytes(signed_document(dev_pki, G22, [H41], 50))
    garbage = tmp_path / "garbage.edxml"
    garbage.write_bytes(b"<edXML>unclosed")

    result = invoke(["send", str(packet), str(garbage), "--wait", "0.5"], cli_env)

    assert result.exit_code == 1
    out = {line.split()[0]: line for line in lines(result)}
    assert "no receipt" in out[str(packet)] and "no intake receipt in time" in out[str(packet)]
    assert "refused  AX200 MALFORMED" in out[str(garbage)] and "(not sent)" in out[str(garbage)]


def test_send_without_trust_roots_says_where_it_looked(cli_env: dict[str, str], tmp_path: Path) -> None:
    packet = tmp_path / "p.edxml"
    packet.write_bytes(b"<x/>")
    result = invoke(["send", str(packet)], {**cli_env, "AXIS_TRUST": str(tmp_path / "missing.pem")})
    assert result.exit_code == 1
    assert "no trusted roots at" in result.stderr and "missing.pem" in result.stderr


# ---------------------------------------------------------------- axis inbox pull

def test_inbox_pull_stores_verifies_and_prints_one_line_per_packet(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    packets = [signed_document(dev_pki, G22, [H41], 60 + n) for n in range(3)]

    async def deliver(hub: HubSide) -> list[str]:
        return [await hub.deliver(p, H41) for p in packets]

    axis_ids = run_hub(transport_url, dev_pki, deliver)
    out = tmp_path / "inbox"
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]

    result = invoke(["inbox", "pull", H41, "--key", str(key), "--cert", str(cert), "--out", str(out),
                     "--wait", "0.5"], cli_env)

    assert result.exit_code == 0, result.output
    assert sorted(line.split()[0] for line in lines(result)) == sorted(str(out / f"{a}.edxml") for a in axis_ids)
    assert all(f"from {G22}" in line for line in lines(result))
    for axis_id, packet in zip(axis_ids, packets):
        assert (out / f"{axis_id}.edxml").read_bytes() == packet

    async def receipts(hub: HubSide) -> list[Message]:
        return await hub.take(wire.RECEIPTS_QUEUE, 3)

    for message in run_hub(transport_url, dev_pki, receipts):
        receipt = read_receipt(dev_pki.verifier.verify_receipt(message.body).signed_root)
        assert receipt.digest == hashlib.sha256((out / f"{receipt.axis_id}.edxml").read_bytes()).hexdigest()


def test_inbox_pull_exits_1_when_a_delivery_fails_verification(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    forged = dev_pki.outsider.sign(document(G22, [H41], 70))
    run_hub(transport_url, dev_pki, lambda hub: hub.deliver(forged, H41))
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]

    result = invoke(["inbox", "pull", H41, "--key", str(key), "--cert", str(cert), "--out", str(tmp_path / "in"),
                     "--wait", "0.3", "--max", "1"], cli_env)

    assert result.exit_code == 1
    assert lines(result) == [] and "AX311 CERT_UNTRUSTED" in result.stderr and "(retry)" in result.stderr
    assert list((tmp_path / "in").iterdir()) == []


def test_inbox_pull_with_another_agencys_certificate_is_refused(
        cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    result = invoke(["inbox", "pull", H41, "--key", str(dev_pki.key_paths[G22]), "--cert",
                     str(dev_pki.cert_paths[G22]), "--out", str(tmp_path / "in")], cli_env)
    assert result.exit_code == 1 and f"bound to agency {G22}, not {H41}" in result.stderr


# ---------------------------------------------------------------- axis status send

def test_status_send_submits_a_signed_status_and_prints_its_intake_receipt(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI) -> None:
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]
    with IntakeResponder(transport_url, dev_pki) as responder:
        result = invoke(["status", "send", f"{G22},2026/03/02,12/VPCP-TTĐT", "--from", H41, "--code", "3",
                         "--description", "Đã tiếp nhận", "--key", str(key), "--cert", str(cert), "--json"], cli_env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["outcome"] == "accepted" and answer["axis_id"] and responder.answered == 1
    stored = Path(cli_env["AXIS_DATA"]) / "agencies" / H41 / "receipts" / f"intake_{answer['submission']}.xml"
    assert read_receipt(stored.read_bytes()).axis_id == answer["axis_id"]


def test_status_send_prints_the_refusal_and_exits_1(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI) -> None:
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]
    refusal = (406, "NOT_A_RECIPIENT", "000.00.00.H41 did not receive this document")
    with IntakeResponder(transport_url, dev_pki, refuse_all=refusal):
        result = invoke(["status", "send", f"{G22},2026/03/02,12/VPCP-TTĐT", "--from", H41, "--code", "06",
                         "--key", str(key), "--cert", str(cert)], cli_env)
    assert result.exit_code == 1
    assert lines(result)[0].split()[1:] == ["-", "refused"]
    assert "AX406 NOT_A_RECIPIENT: 000.00.00.H41 did not receive this document" in result.stderr


def test_status_send_refuses_bad_codes_and_a_refusal_without_reason(cli_env: dict[str, str], dev_pki: DevPKI) -> None:
    key, cert = str(dev_pki.key_paths[H41]), str(dev_pki.cert_paths[H41])
    base = ["status", "send", f"{G22},2026/03/02,12/VPCP-TTĐT", "--from", H41, "--key", key, "--cert", cert]
    result = invoke([*base, "--code", "07"], cli_env)
    assert result.exit_code == 1 and "AX207 INVALID_FIELD" in result.stderr and "'07'" in result.stderr
    result = invoke([*base, "--code", "02"], cli_env)
    assert result.exit_code == 1 and "needs the reason in --description" in result.stderr
