"""Nothing is trusted because of where it is (issue 8, item 3), on the road of issue 9: forged
deliveries, submissions and receipts change no state, on both configurations.

The attacks of issue 8 wrote onto queues that no longer exist (`<code>`, `<code>.receipts`,
`axis.receipts`); each became the equivalent attack on what took their place:

- a packet published onto an agency's queue under a made-up axis id was stored by its adapter.
  Deliveries now wait in the store and the gateway serves them with the seal the store holds, so
  the same attack is whoever can write the database: documents and deliveries planted for H41 with
  no seal, an agency's seal, or the hub's seal over another recipient, other bytes or another axis
  id, and the bytes of a genuinely accepted document swapped in `document_bodies`. H41's `axis
  inbox pull` refuses each with AX411 before storing anything and reports it failed (the sender
  gets an error receipt); nothing reaches H41's folder;
- junk on `axis.intake` with a foreign reply-to made the hub send signed refusals to that agency.
  Outcomes are now rows of `submissions`, read through the gateway; the forged messages name a
  victim (H14) in `ax-agency`, and one names H14's own earlier submission in `ax-submission`:
  H14 can read none of their outcomes and its own keeps its first one, what nobody can be told
  about is dead-lettered (AX414), a replayed packet is a duplicate, another agency's packet under
  H14's submission is refused (AX416) and nothing new is delivered to anyone;
- forged receipts on `<code>.receipts` were stored by the SDK. Delivery receipts now come with an
  ack through the gateway: a receipt of another agency, one replayed from another document, one
  signed by the sender, by an untrusted key, tampered after signing, or no receipt at all, sent
  with H41's ack of a document, is refused (422 AX412/AX413) and changes nothing; the sender cannot
  ack for its recipient (404); H41's genuine pull then records the delivery. Intake receipts come
  only in the gateway's answer, from the `submissions` row the hub wrote: whoever can write the
  database puts forged ones there (signed by an agency, issuer AXIS but signed by an agency, the
  hub's receipt for another agency's packet, the hub's refusal of another submission), and G22's
  SDK, reading its outcomes through the gateway, stores none of them.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from adapters.edge import EdgeNotFound, EdgeRefused
from axis import wire
from axis.receipt import Receipt, build_receipt, now_utc
from axis.seal import Sealer
from axis.store import NewDocument
from axis.trust import Signer
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H14, H41, H99, HUB, SUBJECT, TestPKI, document_id, unsigned_document
from tests.e2e.test_delivery import pull, send, stored_paths
from tests.security.support import as_agency, audited, dead_letters, publish, states, waiting
from tests.security.test_identity import rogue

_T = TypeVar("_T")

# ------------------------------------------------------------------ deliveries without Axis's seal


def _plant(deployment: Deployment, name: str, body: bytes, recipients: list[str], seal: str | None) -> str:
    """A document and its deliveries written straight into the store, as whoever can write the database could."""
    axis_id = wire.new_axis_id()
    with deployment.store() as store, store.write() as tx:
        tx.insert_documents([(NewDocument(axis_id=axis_id, sender_code=G22, document_id=name, seal=seal), body)])
        tx.insert_deliveries(axis_id, recipients)
    return axis_id


def test_bytes_in_the_store_without_axiss_seal_are_never_stored(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    packet = e2e_pki.document(G22, [H41], 1)  # genuinely signed by its sender: only the routing is forged
    digest = hashlib.sha256(packet).hexdigest()
    hub = Sealer.from_files(e2e_pki.key(HUB), e2e_pki.cert(HUB))
    agency = Sealer.from_files(e2e_pki.key(G22), e2e_pki.cert(G22))

    def seal(sealer: Sealer, axis_id: str, to: list[str], digest: str) -> str:
        return sealer.seal(axis_id, to, digest)[wire.H_SEAL]

    planted = {
        "unsealed": _plant(deployment, "unsealed", packet, [H41], None),
        "sealed-by-an-agency": _plant(deployment, "sealed-by-an-agency", packet, [H41], None),
        "sealed-for-another-recipient": _plant(deployment, "sealed-for-another-recipient", packet, [H41], None),
        "recipient-added-to-the-seal": _plant(deployment, "recipient-added-to-the-seal", packet, [H14, H41], None),
        "sealed-for-other-bytes": _plant(deployment, "sealed-for-other-bytes", packet, [H41], None),
        "seal-of-another-delivery": _plant(deployment, "seal-of-another-delivery", packet, [H41], None),
    }
    seals = {
        "sealed-by-an-agency": lambda a: seal(agency, a, [H41], digest),
        "sealed-for-another-recipient": lambda a: seal(hub, a, [H14], digest),
        "recipient-added-to-the-seal": lambda a: seal(hub, a, [H14], digest),
        "sealed-for-other-bytes": lambda a: seal(hub, a, [H41], "0" * 64),
        "seal-of-another-delivery": lambda a: seal(hub, wire.new_axis_id(), [H41], digest),
    }
    # Two genuinely accepted documents whose stored bytes are then replaced by other bytes G22 really signed:
    # once the body alone, once the body and the digest column with it.
    for number, name in ((2, "body-swapped"), (3, "body-and-digest-swapped")):
        path = tmp_path / f"{name}.edxml"
        path.write_bytes(e2e_pki.document(G22, [H41], number))
        [sent] = send(deployment, path)
        planted[name] = sent["axis_id"]
    other = e2e_pki.document(G22, [H41], 4)
    engine = sa.create_engine(deployment.store_url)
    try:
        with engine.begin() as db:
            for name, make in seals.items():
                db.execute(sa.text("UPDATE documents SET seal = :seal WHERE axis_id = :a"),
                           {"seal": make(planted[name]), "a": planted[name]})
            for name in ("body-swapped", "body-and-digest-swapped"):
                db.execute(sa.text("UPDATE document_bodies SET body = :b WHERE axis_id = :a"),
                           {"b": other, "a": planted[name]})
            db.execute(sa.text("UPDATE documents SET digest = :d, size = :s WHERE axis_id = :a"),
                       {"d": hashlib.sha256(other).hexdigest(), "s": len(other),
                        "a": planted["body-and-digest-swapped"]})
    finally:
        engine.dispose()
    assert sorted(waiting(deployment, H41)) == sorted(planted.values())  # the gateway lists every one

    out = tmp_path / H41
    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1")
    assert pulled.exit_code == 1 and pulled.lines() == [], pulled
    refused = [line for line in pulled.stderr.splitlines() if "AX411 UNSEALED_DELIVERY" in line]
    assert sorted(line.split(":")[0] for line in refused) == sorted(planted.values()), pulled
    assert all(line.endswith("(fail)") for line in refused), refused
    assert not out.exists() or list(out.iterdir()) == []
    # Reported failed, never acknowledged: the sender has an error receipt for each, and nothing waits any more.
    assert waiting(deployment, H41) == []
    with deployment.store() as store:
        for name, axis_id in planted.items():
            assert {d.recipient_code: d.state for d in store.deliveries(axis_id) if d.recipient_code == H41} == \
                {H41: "parked"}, name
            assert [(r.kind, r.recipient_code) for r in store.receipts(axis_id)
                    if r.kind in ("error", "delivery")] == [("error", H41)], name


# ------------------------------------------------------------------ messages written straight onto axis.intake


def test_messages_written_onto_intake_give_the_agency_they_name_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    paths = {}
    for code, number in ((H14, 1), (G22, 1)):
        paths[code] = tmp_path / f"{code}.edxml"
        paths[code].write_bytes(e2e_pki.document(code, [H41], number))
    [victim] = send(deployment, paths[H14])        # H14's own submission, decided: accepted
    [first] = send(deployment, paths[G22])
    before = as_agency(deployment, H14, lambda edge: edge.outcome(victim["submission"]))
    assert before.outcome == "accepted"

    tampered = e2e_pki.document(G22, [H41], 2).replace(SUBJECT.encode(),
                                                      SUBJECT.replace("nghiệm", "nghiện").encode())
    forged = {"junk": (uuid.uuid4().hex, b"<junk/>"),
              "unregistered": (uuid.uuid4().hex, unsigned_document(H99, [H41], 3)),  # a sender nobody registered
              "tampered": (uuid.uuid4().hex, tampered),                               # claims G22
              "replayed": (uuid.uuid4().hex, paths[G22].read_bytes()),               # G22's, already accepted
              "under-the-victims-submission": (victim["submission"], e2e_pki.document(G22, [H41], 5))}
    for submission, body in forged.values():
        publish(deployment, wire.INTAKE_QUEUE, body, submission,
                {wire.H_SUBMISSION: submission, wire.H_AGENCY: H14, wire.H_KIND: "document",
                 wire.H_DIGEST: hashlib.sha256(body).hexdigest()})

    def at_least(count: int, found: list[_T]) -> list[_T] | None:
        return found if len(found) >= count else None

    letters = wait_until(lambda: at_least(2, dead_letters(deployment, wire.INTAKE_QUEUE)),
                         "the junk to be dead-lettered on axis.intake") or []
    assert sorted(letter.message_id for letter in letters) == sorted(forged[n][0] for n in ("junk", "unregistered"))
    assert all(letter.reason.startswith("AX414 SENDER_UNKNOWN") for letter in letters), letters
    refused = wait_until(lambda: at_least(4, audited(deployment, "refused")), "the refusals to be audited") or []
    # Audited, each with who may read its outcome: nobody (dead-lettered), the claimed sender G22, and H14's
    # row, which the decision does not overwrite.
    by_reader = sorted(((e["reader"] or ""), e["dead_lettered"], e["code"] // 100 if e["reader"] != H14 else e["code"])
                       for e in refused)
    assert len(refused) == 4 and [r[:2] for r in by_reader] == [("", True), ("", True), (G22, False), (H14, False)]
    assert by_reader[2][2] == 3 and by_reader[3][2] == 416, by_reader
    wait_until(lambda: audited(deployment, "duplicate"), "the replayed packet to be answered as a duplicate")

    async def outcomes(edge: Any) -> dict[str, Any]:
        found = {}
        for name, (submission, _) in forged.items():
            try:
                found[name] = await edge.outcome(submission)
            except EdgeNotFound:
                found[name] = None
        return found
    seen_by_h14 = as_agency(deployment, H14, outcomes)
    seen_by_g22 = as_agency(deployment, G22, outcomes)
    # H14, named by every header, can read none of them; its own submission keeps its first outcome.
    assert {name: o for name, o in seen_by_h14.items() if name != "under-the-victims-submission"} == dict.fromkeys(
        ("junk", "unregistered", "tampered", "replayed"))
    assert seen_by_h14["under-the-victims-submission"] == before
    # The verified (or, unverified, the claimed and registered) sender reads what concerns it.
    assert seen_by_g22["tampered"].outcome == "refused" and seen_by_g22["tampered"].code.startswith("AX3")
    assert seen_by_g22["replayed"].outcome == "duplicate" and seen_by_g22["replayed"].axis_id == first["axis_id"]
    assert seen_by_g22["junk"] is seen_by_g22["unregistered"] is seen_by_g22["under-the-victims-submission"] is None

    # Nothing new is delivered: H41 has exactly the two documents sent through the gateway.
    assert sorted(waiting(deployment, H41)) == sorted([victim["axis_id"], first["axis_id"]])
    with deployment.store() as store:
        assert store.find_document(G22, document_id(G22, 5)) is None
        assert store.find_document(G22, document_id(G22, 2)) is None
        assert len(store.list_deliveries()) == 2


# ------------------------------------------------------------------ delivery receipts sent with an ack


def _receipt(signer: Signer, issuer: str, axis_id: str, digest: str, document: str) -> bytes:
    return signer.sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=issuer, time=now_utc(), axis_id=axis_id, sender=G22,
        recipient=H41, document_id=document, digest=digest)))


def test_forged_or_replayed_delivery_receipts_sent_with_an_ack_change_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    earlier, letter = tmp_path / "earlier.edxml", tmp_path / "letter.edxml"
    earlier.write_bytes(e2e_pki.document(G22, [H41], 2))
    letter.write_bytes(e2e_pki.document(G22, [H41, H14], 1))
    [old] = send(deployment, earlier)
    assert len(stored_paths(pull(deployment, H41, tmp_path / H41))) == 1       # H41's genuine receipt for `old`
    [sent] = send(deployment, letter)
    assert len(stored_paths(pull(deployment, H14, tmp_path / H14))) == 1       # H14's genuine receipt for it
    axis_id, digest = sent["axis_id"], hashlib.sha256(letter.read_bytes()).hexdigest()
    with deployment.store() as store:
        [h14s] = [r.body for r in store.receipts(axis_id) if r.kind == "delivery"]
        [h41s_old] = [r.body for r in store.receipts(old["axis_id"]) if r.kind == "delivery"]
    genuine = _receipt(e2e_pki.signer(H41), H41, axis_id, digest, document_id(G22, 1))
    key, cert = rogue(tmp_path)

    forged = {
        "another-agencys-receipt": (h14s, "AX412"),
        "replayed-from-another-document": (h41s_old, "AX412"),
        "signed-by-the-sender": (_receipt(e2e_pki.signer(G22), G22, axis_id, digest, document_id(G22, 1)), "AX412"),
        "untrusted-key": (_receipt(Signer.from_files(key, cert), H41, axis_id, digest, document_id(G22, 1)), "AX413"),
        "tampered-after-signing": (genuine.replace(digest.encode(), b"0" * 64), "AX413"),
        "not-a-receipt": (b"<Receipt/>", "AX413"),
    }

    async def attack(edge: Any) -> dict[str, tuple[int, str]]:
        answers = {}
        for name, (body, _) in forged.items():
            try:
                answers[name] = (200, f"acknowledged: {(await edge.ack(axis_id, body))['state']}")
            except EdgeRefused as refused:
                answers[name] = (refused.status, refused.code)
        return answers
    answers = as_agency(deployment, H41, attack)
    # (A receipt for another document answered 200 and recorded nothing: /work/notes/sec-findings.md F1.)
    assert answers == {name: (422, code) for name, (_, code) in forged.items()}

    async def sender_acks(edge: Any) -> None:  # the sender acking for its recipient: not its delivery
        with pytest.raises(EdgeNotFound):
            await edge.ack(axis_id, genuine)
        with pytest.raises(EdgeNotFound):
            await edge.ack(axis_id, None)
    as_agency(deployment, G22, sender_acks)

    assert states(deployment, axis_id) == {H41: "queued", H14: "delivered"}
    with deployment.store() as store:
        assert sorted((r.kind, r.recipient_code) for r in store.receipts(axis_id)) == [
            ("delivery", H14), ("intake", None)]
    assert [e for e in audited(deployment, "delivered") if e["recipient"] == H41 and e["digest"] == digest] == []
    assert waiting(deployment, H41) == [axis_id]
    # H41's own pull then records it: the refusals were about the receipts, not the road.
    assert stored_paths(pull(deployment, H41, tmp_path / H41)) == [tmp_path / H41 / f"{axis_id}.edxml"]
    assert states(deployment, axis_id) == {H41: "delivered", H14: "delivered"}


def test_forged_intake_receipts_in_the_store_are_never_stored_by_the_sdk(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    import asyncio

    from adapters.client import AgencyClient

    deployment.serve()

    async def submit(code: str, body: bytes) -> Any:
        async with deployment.edge(code) as edge:
            answer = await edge.submit(body, wait=20)
        assert answer.decided, answer
        return answer
    h14s = asyncio.run(submit(H14, e2e_pki.document(H14, [H41], 1)))
    refusal = asyncio.run(submit(G22, unsigned_document(G22, [H99], 9)))        # unsigned: refused, hub-signed
    assert refusal.outcome == "refused" and h14s.outcome == "accepted"

    def intake(signed_by: str, issuer: str) -> bytes:
        return e2e_pki.signer(signed_by).sign_receipt(build_receipt(Receipt(
            kind="intake", outcome="accepted", issuer=issuer, time=now_utc(), axis_id=wire.new_axis_id(),
            submission="forged", sender=G22, document_id="x")))

    forged = {"signed-by-an-agency": intake(G22, G22), "issuer-not-signer": intake(G22, wire.HUB_IDENTITY),
              "about-another-agency": h14s.receipt, "another-submissions-refusal": refusal.receipt}
    answers = {name: asyncio.run(submit(G22, e2e_pki.document(G22, [H41], number)))
               for number, name in enumerate([*forged, "untouched"], start=1)}
    engine = sa.create_engine(deployment.store_url)
    try:
        with engine.begin() as db:
            for name, body in forged.items():
                db.execute(sa.text("UPDATE submissions SET receipt = :r WHERE id = :id"),
                           {"r": body, "id": answers[name].submission})
    finally:
        engine.dispose()

    async def read_outcomes() -> dict[str, Any]:
        async with deployment.edge(G22) as edge:
            async with AgencyClient(G22, edge, verifier=e2e_pki.verifier(), state_dir=tmp_path / "g22") as client:
                found = await client.intake([a.submission for a in answers.values()], 5)
                stored = sorted(p.name for p in client.receipts.directory.iterdir())
        return {name: found[a.submission] for name, a in answers.items()} | {"stored": stored}
    seen = asyncio.run(read_outcomes())
    for name in forged:
        assert seen[name].receipt is None and seen[name].path is None, (name, seen[name])
        assert seen[name].problem and seen[name].problem.startswith("intake receipt refused"), (name, seen[name])
    assert seen["untouched"].receipt is not None and seen["untouched"].outcome == "accepted"
    assert seen["stored"] == [seen["untouched"].path.name]


# ------------------------------------------------------------------ bodies said to wait in the store


def test_a_message_whose_body_is_said_to_wait_in_the_store_and_does_not_fails_alone(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    """A message written onto intake with `ax-body: store` and no kept body (or another body's digest) is
    dead-lettered at once, AX414; it does not fail the batch it came in, whose other submissions would be
    delivered again and counted until they too were dead-lettered as poison."""
    deployment.serve()
    forged = {"no-row": uuid.uuid4().hex, "wrong-digest": uuid.uuid4().hex}
    with deployment.store() as store, store.write() as tx:  # a body kept for the second one, not its digest
        path = tmp_path / "kept.edxml"
        path.write_bytes(unsigned_document(H99, [H41], 7))
        tx.add_submission_body(forged["wrong-digest"], path)
    for submission in forged.values():
        publish(deployment, wire.INTAKE_QUEUE, b"", submission,
                {wire.H_SUBMISSION: submission, wire.H_AGENCY: H14, wire.H_KIND: "document",
                 wire.H_DIGEST: "0" * 64, wire.H_BODY: wire.BODY_IN_STORE})
    good = tmp_path / "good.edxml"
    good.write_bytes(e2e_pki.document(G22, [H41], 1))
    [sent] = send(deployment, good)
    assert sent["outcome"] == "accepted"

    letters = wait_until(lambda: (found := dead_letters(deployment, wire.INTAKE_QUEUE)) and len(found) >= 2 and found,
                         "both forged messages to be dead-lettered") or []
    assert sorted(letter.message_id for letter in letters) == sorted(forged.values())
    assert all(letter.reason.startswith("AX414 SENDER_UNKNOWN") and letter.attempts == 1 for letter in letters), \
        letters
    assert waiting(deployment, H41) == [sent["axis_id"]]
