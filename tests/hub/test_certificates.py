"""`axis cert`, `axis agency rename` and a rotated axis key, as the real hub's intake and the gateway's service see
them, on both shipped configurations (embedded + SQLite, RabbitMQ + PostgreSQL).

The operator's commands run as operators run them (the typer app, on the world's database); packets are
published straight to the intake queue and decided by the running hub.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner, Result

from axis.edxml import Organization, ResponseFor, packet_to_bytes
from axis.edxml.compose import new_status
from axis.hub import intake
from axis.seal import SealChecker
from axis.signer import LocalSigner
from axis.trust import Signer, load_certificate, pki
from cli.main import app
from tests.hub.conftest import UNREGISTERED, World, running_world

G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"


async def axis(world: World, pki_dir: Path, *args: str) -> Result:
    """`axis ARGS --db <the world's database>`, sealed with the world's axis key, in a thread of its own."""
    env = {"AXIS_DATA": str(world.root / "axis-data"), "AXIS_TRUST": str(pki_dir / "ca" / "ca.pem"),
           "AXIS_CRL": str(pki_dir / "ca" / "crl.pem"), "AXIS_KEY": str(pki_dir / "keys" / "AXIS.key.pem"),
           "AXIS_CERT": str(pki_dir / "keys" / "AXIS.cert.pem"), "COLUMNS": "200"}
    url = world.store.engine.url.render_as_string(hide_password=False)
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--db", url], env=env)


async def decide(world: World, body: bytes, sender: str) -> tuple[str, str | None, str | None]:
    """(outcome, refusal code, detail) of one packet published to the intake queue."""
    outcome, _, _ = await world.outcome(await world.submit(body, sender))
    return outcome.outcome, outcome.code, outcome.message


def fingerprint(path: Path) -> str:
    return load_certificate(path).fingerprint(hashes.SHA256()).hex()


async def test_both_certificates_sign_during_the_overlap_and_a_withdrawn_one_is_refused(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "REGISTRATION_TTL", 0.0)  # a running hub forgets a registration after this
    store_url, transport_url = urls
    new_key, new_cert = pki.issue(G22, pki_dir / "ca", tmp_path / "new")
    old_cert = pki_dir / "keys" / f"{G22}.cert.pem"
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        world.signers["new"] = Signer.from_files(new_key, new_cert)
        assert await decide(world, world.document(G22, [H41], signer="new"), G22) \
            == ("refused", "AX404", f"certificate {fingerprint(new_cert)[:16]}… is not registered for {G22}")
        added = await axis(world, pki_dir, "cert", "add", G22, str(new_cert))
        assert added.exit_code == 0, added.output
        for signer in (G22, "new"):  # the overlap: both sign accepted packets
            assert (await decide(world, world.document(G22, [H41], signer=signer), G22))[0] == "accepted"

        withdrawn = await axis(world, pki_dir, "cert", "withdraw", fingerprint(old_cert)[:16])
        assert withdrawn.exit_code == 0 and "1 active certificate(s) left" in withdrawn.stdout, withdrawn.output
        outcome, code, detail = await decide(world, world.document(G22, [H41]), G22)
        assert (outcome, code) == ("refused", "AX404") and G22 in (detail or "")
        assert (await decide(world, world.document(G22, [H41], signer="new"), G22))[0] == "accepted"
        entries = [(e.action, e.data.get("fingerprint")) for e in world.store.audit_entries_about(G22)
                   if e.action.startswith("certificate-")]
        assert entries == [("certificate-added", fingerprint(new_cert)),
                           ("certificate-withdrawn", fingerprint(old_cert))]
        assert world.store.verify_audit().ok


async def test_an_agency_whose_certificate_was_revoked_sends_again_after_cert_add(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:
    store_url, transport_url = urls
    new_key, new_cert = pki.issue(G17, pki_dir / "ca", tmp_path / "new")
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        with world.store.write() as tx:  # what a CA's revocation leaves in the registry
            assert tx.revoke_certificate(fingerprint(pki_dir / "keys" / f"{G17}.cert.pem"))
        assert (await decide(world, world.document(G17, [H41]), G17))[1] == "AX404"
        again = await axis(world, pki_dir, "cert", "add", G17, str(pki_dir / "keys" / f"{G17}.cert.pem"))
        assert again.exit_code == 1 and "(revoked)" in again.output  # the revoked one never comes back
        added = await axis(world, pki_dir, "cert", "add", G17, str(new_cert))
        assert added.exit_code == 0, added.output
        world.signers[G17] = Signer.from_files(new_key, new_cert)
        assert (await decide(world, world.document(G17, [H41]), G17))[0] == "accepted"


async def test_a_renamed_code_routes_to_its_new_code_and_sends_no_more(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:
    store_url, transport_url = urls
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        waiting = world.document(G22, [G17])
        assert (await decide(world, waiting, G22))[0] == "accepted"  # waits in G17's inbox across the rename
        # Before the rename: G17 stored one document from G22, and H41 one from G17.
        received, _, _ = await world.outcome(await world.submit(world.document(G22, [G17]), G22))
        sent, _, _ = await world.outcome(await world.submit(world.document(G17, [H41]), G17))
        for code, outcome in ((G17, received), (H41, sent)):
            await world.service.ack(world.caller(code), outcome.axis_id, None)
        renamed = await axis(world, pki_dir, "agency", "rename", G17, UNREGISTERED, "--name", "Bộ KH&CN", "--for", "30")
        assert renamed.exit_code == 0 and f"axis cert add {UNREGISTERED}" in renamed.stdout, renamed.output
        new_cert = pki_dir / "keys" / f"{UNREGISTERED}.cert.pem"
        assert (await axis(world, pki_dir, "cert", "add", UNREGISTERED, str(new_cert))).exit_code == 0

        outcome, _, _ = await world.outcome(await world.submit(world.document(G22, [G17, H41]), G22))
        assert outcome.outcome == "accepted"
        assert {d.recipient_code for d in world.store.deliveries(outcome.axis_id)} == {UNREGISTERED, H41}
        refused = await decide(world, world.document(G17, [H41]), G17)
        assert refused[:2] == ("refused", "AX401") and f"renamed {UNREGISTERED}" in (refused[2] or ""), refused
        assert (await decide(world, world.document(UNREGISTERED, [H41]), UNREGISTERED))[0] == "accepted"
        # G17 still answers what it received; H41's answer about G17's document goes to G17's new code.
        answers = []
        for code, outcome, about in ((G17, received, G22), (H41, sent, G17)):
            document = world.store.get_document(outcome.axis_id or "")
            assert document is not None
            status = world.signers[code].sign(packet_to_bytes(new_status(
                Organization(code), ResponseFor(organ_id=about, document_id=document.document_id), "01")))
            answer, _, _ = await world.outcome(await world.submit(status, code))
            assert answer.outcome == "accepted", answer
            answers.append({d.recipient_code for d in world.store.deliveries(answer.axis_id or "")})
        assert answers == [{G22}, {UNREGISTERED}]
        # What waited for G17 is still G17's (its credential pulls it); its history keeps its code.
        assert [item.sender_code for item in world.store.inbox(G17)] == [G22]
        assert world.store.get_agency(G17) is not None
        actions = [e.action for e in world.store.audit_entries_about(G17)]
        assert "agency-renamed" in actions

        # Attacks: a chain back to the renamed code, a rename onto another agency's code, a second rename.
        back = await axis(world, pki_dir, "agency", "rename", UNREGISTERED, G17)
        assert back.exit_code == 1 and "was itself renamed" in back.output
        onto = await axis(world, pki_dir, "agency", "rename", H14, G22)
        assert onto.exit_code == 1 and "--merge" in onto.output
        twice = await axis(world, pki_dir, "agency", "rename", G17, H14, "--merge")
        assert twice.exit_code == 1 and "already renamed" in twice.output
        assert world.store.aliases([H14, UNREGISTERED]) == {}

        # After its grace period the old code is unknown to routing; a loop written behind Axis's back
        # refuses instead of hanging.
        now = world.store.clock()
        with world.store.write() as tx:
            tx.add_alias(H14, H41, now - timedelta(seconds=1))
        expired = await decide(world, world.document(G22, [H14]), G22)
        assert expired[:2] == ("refused", "AX402") and "renamed 000.00.00.H41" in (expired[2] or ""), expired
        with world.store.write() as tx:
            tx.add_alias(H41, UNREGISTERED, now + timedelta(days=1))
            tx.add_alias(UNREGISTERED, H41, now + timedelta(days=1))
        loop = await decide(world, world.document(G22, [H41]), G22)
        assert loop[:2] == ("refused", "AX402") and "loop" in (loop[2] or ""), loop


async def test_a_packet_sealed_before_the_key_rotation_is_served_with_the_certificate_that_sealed_it(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:
    from axis.gateway import AgencyService

    store_url, transport_url = urls
    new_key, new_cert = pki.issue("AXIS", pki_dir / "ca", tmp_path / "new")
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        before = await world.outcome(await world.submit(world.document(G22, [H41]), G22))
        rotated = AgencyService(world.store, world.transport, signer=LocalSigner.from_files(new_key, new_cert),
                                verifier=world.verifier)
        try:
            served = await rotated.fetch(world.caller(H41), before[0].axis_id or "")
        finally:
            await rotated.close()
        checker = SealChecker(world.verifier)
        checker.check(served.headers, served.axis_id, H41, served.digest)  # AX411 if served with the new certificate
        assert before[2] == "AXIS"
