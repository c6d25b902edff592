"""Issue 9's "done when", with curl against a real `axis serve` (hub + gateway child), on both
configurations: a document sent with curl reaches two recipients byte-identical; their acks and a
status 03 show in GET /v1/sent and `axis receipts`; a third agency's credential gets 404 on that
document's every operation; a revoked credential gets 401."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document, new_status
from axis.edxml.model import ResponseFor
from axis.trust import Signer, pki
from cli.main import app
from tests.gateway.conftest import CONFIGURATIONS
from tests.gateway.support import Process, axis_env
from tests.store.conftest import fresh_rabbitmq_and_postgres

G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"
AGENCIES = (G22, H41, H14, G17)
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("curl-pki")
    pki.init_ca(root / "ca")
    for code in ("AXIS", *AGENCIES):
        pki.issue(code, root / "ca", root / "keys")
    return root


@pytest.fixture(params=CONFIGURATIONS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path, keys: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """An AXIS_DATA folder with the PKI and the hub's key, and the environment naming its database and broker."""
    data = tmp_path / "axis-data"
    shutil.copytree(keys / "ca", data / "pki")
    (data / "hub").mkdir(mode=0o700)
    for suffix in ("key.pem", "cert.pem"):
        shutil.copy(keys / "keys" / f"AXIS.{suffix}", data / "hub" / f"AXIS.{suffix}")
    if request.param == "embedded":
        yield data, {}
        return
    with fresh_rabbitmq_and_postgres(request, "axis-curl") as (db, broker):
        yield data, {"AXIS_DB": db, "AXIS_BROKER": broker}


def _axis(data: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={**axis_env(data), **env})
    assert result.exit_code == 0, f"axis {' '.join(args)}: {result.output}"
    return result.stdout


def _curl(url: str, auth: Path | None, *args: str) -> tuple[int, bytes]:
    """curl as an agency's system would call it: the credential from a header file, never on the command line."""
    command = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *(["-H", f"@{auth}"] if auth else []), *args, url]
    done = subprocess.run(command, capture_output=True, timeout=60, check=True)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


@pytest.mark.slow(seconds=20)
def test_a_document_sent_with_curl_reaches_two_recipients_and_a_third_agency_sees_nothing(
        deployment: tuple[Path, dict[str, str]], keys: Path, processes: list[Process], tmp_path: Path) -> None:
    data, env = deployment
    for code in AGENCIES:
        _axis(data, env, "agency", "add", code, "--name", f"Agency {code}", "--cert",
              str(keys / "keys" / f"{code}.cert.pem"))
    serve = Process(data, "serve", "--workers", "1", "--gateway-port", "0", env=env)
    processes.append(serve)
    gw = serve.wait_for(r"gateway (http://127\.0\.0\.1:\d+)").group(1)
    auth, ids = {}, {}
    for code in AGENCIES:
        issued = json.loads(_axis(data, env, "credentials", "issue", "--agency", code, "--json"))
        ids[code] = issued["id"]
        auth[code] = tmp_path / f"{code}.auth"
        auth[code].write_text(f"Authorization: Bearer {issued['credential']}\n")
        auth[code].chmod(0o600)
    signers = {code: Signer.from_files(keys / "keys" / f"{code}.key.pem", keys / "keys" / f"{code}.cert.pem")
               for code in AGENCIES}

    packet = new_document(Organization(G22, organ_name="Văn phòng Chính phủ"), [Organization(H41), Organization(H14)],
                          code_number="9", code_notation="VPCP-TTĐT", subject="Gửi qua cổng HTTP",
                          signer=SignerInfo(full_name="Nguyễn Văn A"),
                          attachments=[Attachment(content_id="cid:1", attachment_name="a.pdf",
                                                  content_type="application/pdf", data=b"%PDF-1.4 " + bytes(256))])
    signed = tmp_path / "document.edxml"
    signed.write_bytes(signers[G22].sign(packet_to_bytes(packet)))
    deadline = time.monotonic() + 60
    while True:  # the gateway child starts a moment after the hub
        try:
            status, _ = _curl(f"{gw}/healthz", None)
            if status == 200:
                break
        except subprocess.CalledProcessError:
            pass
        assert time.monotonic() < deadline, "the gateway did not answer"
        time.sleep(0.2)

    status, answer = _curl(f"{gw}/v1/packets?wait=30", auth[G22], "-H", "Content-Type: application/xml",
                           "--data-binary", f"@{signed}")
    assert status == 200, answer
    sent = json.loads(answer)
    assert sent["outcome"] == "accepted", sent
    axis_id, submission = sent["axis_id"], sent["submission"]

    for code in (H41, H14):
        status, listing = _curl(f"{gw}/v1/inbox?wait=30", auth[code])
        assert status == 200 and [i["axis_id"] for i in json.loads(listing)["items"]] == [axis_id]
        status, body = _curl(f"{gw}/v1/inbox/{axis_id}", auth[code])
        assert status == 200 and body == signed.read_bytes()             # byte-identical
        status, acked = _curl(f"{gw}/v1/inbox/{axis_id}/ack", auth[code], "-X", "POST")
        assert status == 200 and json.loads(acked)["state"] == "delivered", acked

    document_id = json.loads(_curl(f"{gw}/v1/sent", auth[G22])[1])["items"][0]["document_id"]
    answer03 = tmp_path / "status-03.edxml"
    answer03.write_bytes(signers[H41].sign(packet_to_bytes(new_status(
        Organization(H41), ResponseFor(organ_id=G22, document_id=document_id), "03"))))
    status, answered = _curl(f"{gw}/v1/packets?wait=30", auth[H41], "-H", "Content-Type: application/xml",
                             "--data-binary", f"@{answer03}")
    assert status == 200 and json.loads(answered)["outcome"] == "accepted", answered

    status, listing = _curl(f"{gw}/v1/sent", auth[G22])
    [mine] = [i for i in json.loads(listing)["items"] if i["axis_id"] == axis_id]
    assert mine["recipients"] == {H41: "accepted", H14: "delivered"}, mine
    timeline = json.loads(_axis(data, env, "receipts", axis_id, "--json"))[0]
    kinds = {r["recipient"]: [x["kind"] for x in r["receipts"]] for r in timeline["recipients"]}
    assert "delivery" in kinds[H41] and "status" in kinds[H41] and "delivery" in kinds[H14], kinds
    status, reply = _curl(f"{gw}/v1/inbox?wait=30", auth[G22])
    assert status == 200 and [i["kind"] for i in json.loads(reply)["items"]] == ["status"]
    status, answers = _curl(f"{gw}/v1/documents/{axis_id}/receipts", auth[G22])
    codes = {(r["recipient"], r["kind"], r["code"]) for r in json.loads(answers)["receipts"]}
    assert {(H41, "status", "03"), (H41, "delivery", "delivered")} <= codes, codes  # a status code, not AX003

    # A third agency: 404 on every operation on that document and that submission.
    for method, path, extra in (("GET", f"/v1/submissions/{submission}", ()),
                                ("GET", f"/v1/inbox/{axis_id}", ()),
                                ("POST", f"/v1/inbox/{axis_id}/ack", ()),
                                ("POST", f"/v1/inbox/{axis_id}/fail",
                                 ("-H", "Content-Type: application/json", "-d", '{"reason": "x"}')),
                                ("GET", f"/v1/documents/{axis_id}/receipts", ())):
        status, refused = _curl(f"{gw}{path}", auth[G17], "-X", method, *extra)
        assert status == 404 and json.loads(refused)["error"]["code"] == "GW404", (path, refused)
    for path in ("/v1/inbox", "/v1/sent"):
        assert json.loads(_curl(f"{gw}{path}", auth[G17])[1])["items"] == []

    # A revoked credential: 401 (at once in a new gateway process; within 5 s in a running one).
    _axis(data, env, "credentials", "revoke", ids[G22])
    deadline = time.monotonic() + 6
    while (status := _curl(f"{gw}/v1/sent", auth[G22])[0]) != 401:
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.2)
    assert serve.stop() == 0
