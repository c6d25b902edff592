"""`axis send`, `axis inbox pull`, `axis status send` through typer's CliRunner, against a running axis.

The axis (hub, service, and on the gateway road the gateway over TCP) runs in a
thread of its own (`AxisThread`); the commands run their own event loop. On the
`local` road the commands use the operator's settings (AXIS_DB, AXIS_BROKER,
AXIS_KEY); on the `gateway` road AXIS_GATEWAY and a credential file.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis.edxml import load_packet
from cli.main import app
from cli.output import QUEUED
from tests.adapters.conftest import ROADS
from tests.adapters.support import G22, H14, H41, Axis, AxisThread, DevPKI, signed_document


def lines(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


class Commands:
    """Run agency commands for an agency on this test's road."""

    def __init__(self, server: AxisThread, env: dict[str, str], tmp_path: Path) -> None:
        self.server, self.env, self.tmp_path = server, env, tmp_path

    @property
    def road(self) -> str:
        return self.server.axis.road

    def environment(self, code: str) -> dict[str, str]:
        if self.road == "local":
            return self.env
        token = self.server.call(lambda axis: _credential(axis, code))
        path = self.tmp_path / f"{code}.credential"
        path.write_text(token + "\n")
        assert self.server.axis.url is not None
        return {**self.env, "AXIS_GATEWAY": self.server.axis.url, "AXIS_CREDENTIAL": str(path)}

    def invoke(self, code: str, args: list[str]) -> Result:
        return CliRunner().invoke(app, args, env=self.environment(code))

    def send_and_pull(self, pki: DevPKI, recipients: list[str], number: int) -> tuple[bytes, str]:
        packet = self.tmp_path / f"doc-{number}.edxml"
        packet.write_bytes(signed_document(pki, G22, recipients, number))
        result = self.invoke(G22, ["send", str(packet), "--json"])
        assert result.exit_code == 0, result.output
        [answer] = json.loads(result.stdout)
        return packet.read_bytes(), answer["axis_id"]


async def _credential(axis: Axis, code: str) -> str:
    return axis.credential(code)


@pytest.fixture
def commands(axis_road: str, deployment_urls: tuple[str, str, str], dev_pki: DevPKI, cli_env: dict[str, str],
             tmp_path: Path) -> Iterator[Commands]:
    _, store_url, transport_url = deployment_urls
    with AxisThread(dev_pki, store_url, transport_url, road=axis_road.rsplit("-", 1)[1]) as server:
        yield Commands(server, cli_env, tmp_path)


# ---------------------------------------------------------------- axis send

def test_send_prints_each_packets_outcome_and_exits_1_when_one_is_refused(
        commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    good = [signed_document(dev_pki, G22, [H41], n) for n in (1, 2)]
    (folder / "a.edxml").write_bytes(good[0])
    (folder / "b.edxml").write_bytes(good[1])
    (folder / "c.edxml").write_bytes(good[1].replace(b"2/VPCP", b"3/VPCP"))  # changed after signing
    (folder / "notes.txt").write_text("not a packet; folders are searched for *.edxml only")
    (folder / "garbage.edxml").write_bytes(b"<edXML>unclosed")
    again = tmp_path / "a-again.edxml"
    again.write_bytes(good[0])

    first = commands.invoke(G22, ["send", str(folder / "a.edxml"), "--wait", "15"])
    assert first.exit_code == 0, first.output
    result = commands.invoke(G22, ["send", str(folder), str(again), "--wait", "15"])

    assert result.exit_code == 1, result.output
    out = {line.split()[0]: line for line in lines(result)}
    assert set(out) == {str(folder / n) for n in ("a.edxml", "b.edxml", "c.edxml", "garbage.edxml")} | {str(again)}
    axis_id = lines(first)[0].split()[1]
    assert out[str(folder / "a.edxml")].split()[1:3] == [axis_id, "duplicate"]
    assert out[str(again)].split()[1:3] == [axis_id, "duplicate"]
    assert out[str(folder / "b.edxml")].split()[2] == "accepted"
    assert "refused  AX301 SIGNATURE_INVALID:" in out[str(folder / "c.edxml")]
    assert "refused  AX200 MALFORMED" in out[str(folder / "garbage.edxml")]
    assert "(not sent)" in out[str(folder / "garbage.edxml")]
    assert "2 of 5 packets were not accepted" in result.stderr
    receipts = Path(commands.env["AXIS_DATA"]) / "agencies" / G22 / "receipts"
    assert len(list(receipts.glob("intake_*.xml"))) == 5


def test_send_json_reports_every_packet_and_exits_0_when_all_are_accepted(
        commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    files = []
    for n, recipient in enumerate((H41, H14, H41)):
        files.append(tmp_path / f"{n}.edxml")
        files[-1].write_bytes(signed_document(dev_pki, G22, [recipient], 40 + n))

    result = commands.invoke(G22, ["send", *map(str, files), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [str(f) for f in files]
    assert {r["sender"] for r in report} == {G22}
    assert {r["outcome"] for r in report} == {"accepted"} and all(r["axis_id"] for r in report)


def test_send_says_queued_and_exits_3_when_no_hub_decides(commands: Commands, dev_pki: DevPKI,
                                                          tmp_path: Path) -> None:
    commands.server.call(lambda axis: axis.stop_hub())
    packet = tmp_path / "p.edxml"
    packet.write_bytes(signed_document(dev_pki, G22, [H41], 50))

    result = commands.invoke(G22, ["send", str(packet), "--wait", "0.5"])

    assert result.exit_code == QUEUED, result.output
    [line] = lines(result)
    assert line.split()[1:3] == ["-", "queued"] and "is the hub running?" in line
    assert "1 of 1 packets are queued" in result.stderr

    commands.server.call(lambda axis: axis.start_hub())
    again = commands.invoke(G22, ["send", str(packet), "--wait", "15", "--json"])
    assert json.loads(again.stdout)[0]["outcome"] == "duplicate"  # the queued one was decided first


def test_send_of_another_agencys_packet(commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    """On the gateway road the credential is G22's: intake refuses H41's packet (AX416), with a receipt.
    On the operator's own machine each packet is sent for its own sender."""
    packet = tmp_path / "h41.edxml"
    packet.write_bytes(signed_document(dev_pki, H41, [G22], 60))
    result = commands.invoke(G22, ["send", str(packet), "--json"])
    [report] = json.loads(result.stdout)
    if commands.road == "local":
        assert result.exit_code == 0 and report["outcome"] == "accepted", result.output
    else:
        assert result.exit_code == 1 and report["outcome"] == "refused", result.output
        assert report["refusal"]["code"] == 416 and report["submission"], report


def test_send_without_trust_roots_says_where_it_looked(commands: Commands, tmp_path: Path) -> None:
    packet = tmp_path / "p.edxml"
    packet.write_bytes(b"<x/>")
    env = {**commands.environment(G22), "AXIS_TRUST": str(tmp_path / "missing.pem")}
    result = CliRunner().invoke(app, ["send", str(packet)], env=env)
    assert result.exit_code == 1
    assert "no trusted roots at" in result.stderr and "missing.pem" in result.stderr


# ---------------------------------------------------------------- axis inbox pull

def test_inbox_pull_stores_verifies_acknowledges_and_prints_one_line_per_packet(
        commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    sent = [commands.send_and_pull(dev_pki, [H41], 70 + n) for n in range(3)]
    out = tmp_path / "inbox"
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]

    result = commands.invoke(H41, ["inbox", "pull", H41, "--key", str(key), "--cert", str(cert), "--out", str(out),
                                   "--wait", "0.5"])

    assert result.exit_code == 0, result.output
    assert sorted(line.split()[0] for line in lines(result)) == sorted(str(out / f"{a}.edxml") for _, a in sent)
    assert all(f"from {G22}" in line for line in lines(result))
    for packet, axis_id in sent:
        assert (out / f"{axis_id}.edxml").read_bytes() == packet
    states = commands.server.call(lambda axis: _states(axis, [a for _, a in sent]))
    assert set(states) == {"delivered"}
    again = commands.invoke(H41, ["inbox", "pull", H41, "--key", str(key), "--cert", str(cert), "--out", str(out),
                                  "--wait", "0.3"])
    assert again.exit_code == 0 and lines(again) == []


async def _states(axis: Axis, axis_ids: list[str]) -> list[str]:
    return [d.state for a in axis_ids for d in axis.store.deliveries(a)]


def test_inbox_pull_with_another_agencys_certificate_is_refused(commands: Commands, dev_pki: DevPKI,
                                                                tmp_path: Path) -> None:
    result = commands.invoke(H41, ["inbox", "pull", H41, "--key", str(dev_pki.key_paths[G22]), "--cert",
                                   str(dev_pki.cert_paths[G22]), "--out", str(tmp_path / "in")])
    assert result.exit_code == 1 and f"bound to agency {G22}, not {H41}" in result.stderr


# ---------------------------------------------------------------- axis status send

def test_status_send_submits_a_signed_status_and_prints_its_outcome(
        commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    packet, _ = commands.send_and_pull(dev_pki, [H41], 80)
    key, cert = dev_pki.key_paths[H41], dev_pki.cert_paths[H41]
    pulled = commands.invoke(H41, ["inbox", "pull", H41, "--key", str(key), "--cert", str(cert),
                                   "--out", str(tmp_path / "in"), "--wait", "0.3"])
    assert pulled.exit_code == 0, pulled.output
    about = load_packet(packet).document_id

    result = commands.invoke(H41, ["status", "send", about, "--from", H41, "--code", "3",
                                   "--description", "Đã tiếp nhận", "--key", str(key), "--cert", str(cert),
                                   "--json"])

    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["outcome"] == "accepted" and answer["axis_id"]
    stored = Path(commands.env["AXIS_DATA"]) / "agencies" / H41 / "receipts" / f"intake_{answer['submission']}.xml"
    assert stored.is_file()


def test_status_send_prints_the_refusal_and_exits_1(commands: Commands, dev_pki: DevPKI) -> None:
    packet, _ = commands.send_and_pull(dev_pki, [H41], 90)
    key, cert = dev_pki.key_paths[H14], dev_pki.cert_paths[H14]
    result = commands.invoke(H14, ["status", "send", load_packet(packet).document_id, "--from", H14,
                                   "--code", "06", "--key", str(key), "--cert", str(cert)])
    assert result.exit_code == 1, result.output
    assert lines(result)[0].split()[1:] == ["-", "refused"]
    assert "AX406 NOT_A_RECIPIENT" in result.stderr


def test_status_send_refuses_bad_codes_and_a_refusal_without_reason(commands: Commands, dev_pki: DevPKI) -> None:
    key, cert = str(dev_pki.key_paths[H41]), str(dev_pki.cert_paths[H41])
    base = ["status", "send", f"{G22},2026/03/02,12/VPCP-TTĐT", "--from", H41, "--key", key, "--cert", cert]
    result = commands.invoke(H41, [*base, "--code", "07"])
    assert result.exit_code == 1 and "AX207 INVALID_FIELD" in result.stderr and "'07'" in result.stderr
    result = commands.invoke(H41, [*base, "--code", "02"])
    assert result.exit_code == 1 and "needs the reason in --description" in result.stderr


# ---------------------------------------------------------------- the gateway road's own failures

@pytest.mark.parametrize("axis_road", [road for road in ROADS if "gateway" in str(road)], indirect=True)
def test_a_gateway_without_a_credential_or_with_a_wrong_one_is_refused_in_one_line(
        commands: Commands, dev_pki: DevPKI, tmp_path: Path) -> None:
    packet = tmp_path / "p.edxml"
    packet.write_bytes(signed_document(dev_pki, G22, [H41], 100))
    env = commands.environment(G22)
    missing = CliRunner().invoke(app, ["send", str(packet)], env={**env, "AXIS_CREDENTIAL": ""})
    assert missing.exit_code == 1 and "--gateway needs the agency's credential" in missing.stderr
    wrong = tmp_path / "wrong.credential"
    wrong.write_text("axis_" + "A" * 43)
    refused = CliRunner().invoke(app, ["send", str(packet)], env={**env, "AXIS_CREDENTIAL": str(wrong)})
    assert refused.exit_code == 1 and "the gateway refused the credential" in refused.stderr
