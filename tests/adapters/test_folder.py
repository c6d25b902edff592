"""The watched-folder adapter: outbox → sent/failed, deliveries → inbox, receipts → state/receipts.

As a library (`FolderAdapter`) on every road, and as the command `axis adapter folder` (a real process).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adapters.folder import FolderAdapter
from tests.adapters.support import G22, H14, H41, STEP, Axis, AxisThread, DevPKI, document, signed_document
from tests.adapters.test_client import send

REPO = Path(__file__).resolve().parents[2]
AXIS = Path(sys.executable).with_name("axis")


async def test_one_round_sends_the_outbox_receives_the_inbox_and_keeps_the_receipts(
        axis: Axis, tmp_path: Path) -> None:
    pki = axis.pki
    adapter = FolderAdapter(G22, axis.edge(G22), tmp_path / "g22", signer=pki.signers[G22], verifier=pki.verifier)
    outbox = adapter.outbox
    good = {f"cv-{n}": signed_document(pki, G22, [H41], 80 + n) for n in range(2)}
    for name, packet in good.items():
        (outbox / f"{name}.edxml").write_bytes(packet)
    (outbox / "broken.edxml").write_bytes(b"<edXML>")
    (outbox / "foreign.edxml").write_bytes(signed_document(pki, H41, [G22], 90))
    (outbox / "unsigned.edxml").write_bytes(document(G22, [H41], 92))   # refused by the hub
    (outbox / ".half-written.edxml.tmp").write_bytes(b"<ed")
    incoming, axis_id = await send(axis, pki, H41, [G22], 91, tmp_path / "h41")

    round_ = await adapter.run_once(wait=0.5)
    if not (adapter.failed / "unsigned.edxml").exists():
        _, refused = await adapter.collect(wait=10)   # the hub had not decided within the round
        round_.refused += refused

    assert sorted(p.name for p in outbox.iterdir()) == [".half-written.edxml.tmp"]
    sent = {s.original.stem: s for s in round_.sent if s.path.parent == adapter.sent}
    for name, packet in good.items():
        assert sent[name].path == adapter.sent / f"{name}.{sent[name].submission}.edxml"
        assert sent[name].path.read_bytes() == packet
        assert adapter.client.receipts.intake(sent[name].submission).outcome == "accepted"
    assert "AX200 MALFORMED" in (adapter.failed / "broken.reason.txt").read_text()
    assert "belongs to 000.00.00.G22" in (adapter.failed / "foreign.reason.txt").read_text()
    assert "AX30" in (adapter.failed / "unsigned.reason.txt").read_text()  # the hub's refusal, from its receipt
    assert sorted(p.name for p in adapter.failed.glob("*.edxml")) == ["broken.edxml", "foreign.edxml",
                                                                      "unsigned.edxml"]
    assert [r.axis_id for r in round_.received] == [axis_id]
    assert (adapter.inbox / f"{axis_id}.edxml").read_bytes() == incoming
    stored = sorted(p.name for p in (tmp_path / "g22" / "state" / "receipts").glob("intake_*"))
    assert len(stored) == 3
    adapter.close()


def test_axis_adapter_folder_runs_until_sigterm(axis_road: str, deployment_urls: tuple[str, str, str],
                                                dev_pki: DevPKI, cli_env: dict[str, str], tmp_path: Path) -> None:
    _, store_url, transport_url = deployment_urls
    road = axis_road.rsplit("-", 1)[1]
    root = tmp_path / "h14"
    (root / "outbox").mkdir(parents=True)
    with AxisThread(dev_pki, store_url, transport_url, road=road) as server:
        env = {**os.environ, **cli_env}
        if road == "gateway":
            token = server.call(lambda axis: _issue(axis, H14))
            (tmp_path / "h14.credential").write_text(token)
            env.update(AXIS_GATEWAY=server.axis.url or "", AXIS_CREDENTIAL=str(tmp_path / "h14.credential"))
        incoming = signed_document(dev_pki, G22, [H14], 1)
        server.call(lambda axis: _submit(axis, G22, incoming))
        (root / "outbox" / "reply.edxml").write_bytes(signed_document(dev_pki, H14, [G22], 2))
        process = subprocess.Popen(
            [str(AXIS), "adapter", "folder", "--agency", H14, "--root", str(root), "--key",
             str(dev_pki.key_paths[H14]), "--cert", str(dev_pki.cert_paths[H14]), "--wait", "0.5"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + STEP
            while time.monotonic() < deadline and not (list((root / "inbox").glob("*.edxml"))
                                                       and list((root / "sent").glob("reply.*.edxml"))):
                assert process.poll() is None, process.communicate()
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=STEP)
        assert process.returncode == 0, err
        [stored] = list((root / "inbox").glob("*.edxml"))
        assert stored.read_bytes() == incoming
        assert any(line.startswith("sent      reply.edxml") for line in out.splitlines()), out
        assert any(line.startswith(f"received  {stored}") for line in out.splitlines()), out


async def _issue(axis: Axis, code: str) -> str:
    return axis.credential(code)


async def _submit(axis: Axis, code: str, packet: bytes) -> None:
    submission = await axis.edge(code).submit(packet, wait=10)
    assert submission.outcome == "accepted", submission
