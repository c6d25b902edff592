"""The agency SDK: send signed packets to Axis, receive what is addressed to you, keep every receipt.

One `AgencyClient` per agency and process, built once with the agency's
`Signer` and a `Verifier` (keys and certificates parsed once) and a transport
(`axis.transport.open_transport`). The wire contract is `axis.wire`:

| method | queue | what happens |
|---|---|---|
| `submit`, `submit_many`, `send_status` | publishes to `axis.intake` | headers `ax-submission`, `ax-reply-to` |
| `collect_receipts`, `wait_for_intake` | consumes `<code>.receipts` | verify, store, then ack |
| `pull` | consumes `<code>`, publishes to `axis.receipts` | verify, store, receipt, then ack |

What callers may rely on
------------------------
- `submit*` returns only once the broker durably holds the packet; it raises
  (`PacketError` for bytes that are not an edXML packet, `UnroutableError` when
  the hub's intake queue does not exist, `TransportError` when the broker did
  not confirm within the retry policy's patience, `axis.retry`) and never
  drops a packet silently. Re-submitting a packet is safe: the hub answers a
  duplicate with its first receipt.
- Persist first, then acknowledge (QCVN 102 practice, reference §9): a receipt
  is in `state_dir/receipts/` and a delivered packet in the output folder,
  fsynced, before the broker forgets it. Killing the process at any moment
  loses nothing; the broker delivers again and the inbox ledger
  (`state_dir/inbox.db`, see `adapters.inbox`) de-duplicates on the axis id,
  so the application sees each packet once, as `<out_dir>/<axis_id>.edxml`,
  byte for byte as its sender signed it.
- Every delivery is verified (Axis's seal over axis id, recipient and digest,
  `axis.seal`; digest header; XML signature, chain, revocation, signer =
  sender) before it is stored; one without a valid seal is dead-lettered at
  once (AX411), one that fails otherwise is retried by the transport and
  finally dead-lettered; neither is stored, nor silently dropped.
- The signing certificate is checked when the client is built: one the axis
  would refuse for this agency (no agency code, another code, not chaining to
  the trusted roots, expired, revoked) raises a `Refusal` (TrustError 3xx, or
  RegistryError AX410 for another agency's) before anything is consumed or
  published.
  A receipt whose signature fails is dead-lettered.
- Several processes of one agency may share a state dir and the queues: each
  sees the receipts the others stored.
- Verification, signing and file writes run in worker threads, never on the
  event loop.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lxml import etree

from adapters.documents import response_for_document, response_for_from_document_id
from adapters.inbox import InboxEntry, InboxLedger, PacketFacts
from adapters.receipt_store import ReceiptStore, check_name_part
from axis import wire
from axis.edxml import (
    DocumentPacket,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusCode,
    packet_to_bytes,
    parse_agency_code,
    routing_facts,
)
from axis.edxml.compose import new_status
from axis.private import private_directory
from axis.receipt import Receipt, build_receipt, now_utc, read_receipt
from axis.refusals import Refusal, RefusalCode, RegistryError, TrustError
from axis.retry import PATIENCE, publish_all, retrying
from axis.seal import SealChecker
from axis.transport import Delivery, OutgoingMessage, Transport, TransportError, UnroutableError
from axis.trust import Signer, Verifier

log = logging.getLogger("adapters.client")

MAX_REMEMBERED = 100_000       # submissions whose DocumentId is kept to check their intake receipt against
PUBLISH_BATCH = 500           # submit_many hands the transport this many packets at a time
_T = TypeVar("_T")


@dataclass(frozen=True)
class PacketSummary:
    """What an (unverified) packet says about itself: enough to route a submission."""

    kind: str              # "document" | "status"
    sender: str            # From/OrganId
    document_id: str | None
    priority: int          # OtherInfo/Priority; 0 for status packets


@dataclass(frozen=True)
class ReceivedReceipt:
    """A verified Axis receipt, stored in `path` before it was acknowledged."""

    receipt: Receipt
    signer_code: str       # the agency code of the certificate that signed it (AXIS for the hub)
    submission: str | None  # header ax-submission: the submission an intake receipt answers
    path: Path

    @property
    def outcome(self) -> str:
        """accepted / duplicate / refused / delivered / failed, seen from `submission`."""
        return receipt_outcome(self.receipt, self.submission)


@dataclass(frozen=True)
class Received:
    """A packet delivered to this agency and stored at `path` (or found already stored)."""

    axis_id: str
    kind: str              # "document" | "status"
    sender: str            # From/OrganId of the verified packet
    document_id: str | None  # DocumentId; for a status packet, the document it answers
    status_code: str | None
    digest: str            # sha256 hex of the stored bytes
    path: Path
    duplicate: bool        # True: stored by an earlier delivery; only the receipt was sent again


@dataclass(frozen=True)
class Rejection:
    """A message this client could not accept; the transport retries or dead-letters it."""

    queue: str
    message_id: str
    reason: str
    action: str            # "retry" | "dead-letter"


def receipt_outcome(receipt: Receipt, submission: str | None = None) -> str:
    """The outcome of an intake receipt for `submission`: a re-sent first receipt means `duplicate`."""
    if (receipt.kind == "intake" and receipt.outcome == "accepted" and submission is not None
            and receipt.submission is not None and receipt.submission != submission):
        return "duplicate"
    return receipt.outcome


def describe_refusal(receipt: Receipt) -> str | None:
    """`AX301 SIGNATURE_INVALID: detail` for a receipt that carries a refusal, else None."""
    if receipt.refusal_code is None:
        return None
    name = receipt.refusal_name
    if not name:
        try:
            name = RefusalCode.from_number(receipt.refusal_code).name
        except KeyError:
            name = "UNKNOWN"
    return f"AX{receipt.refusal_code} {name}: {receipt.refusal_detail or ''}".rstrip(": ")


def summarize_packet(data: bytes) -> PacketSummary:
    """Read a packet's routing fields (safe parser, no schema check); `PacketError` if it is not edXML.

    Only the few header fields routing needs are read (a full model costs ~7x
    more, which matters for folders of thousands); the hub checks the rest.
    """
    facts = routing_facts(data)
    return PacketSummary(facts.kind, facts.sender, facts.document_id or None, facts.priority)


def _facts(root: etree._Element) -> PacketFacts:
    facts = routing_facts(root)
    return PacketFacts(facts.kind, facts.sender, facts.document_id or None, facts.status_code)


class AgencyClient:
    """The Axis SDK for one agency. See the module docstring for the guarantees."""

    def __init__(self, code: str, transport: Transport, *, signer: Signer | None = None, verifier: Verifier,
                 state_dir: Path, concurrency: int = 4) -> None:
        """`signer` is needed to receive (delivery receipts) and for `send_status`; sending
        pre-signed packets and collecting receipts need only the `verifier`.
        `concurrency`: deliveries or receipts handled at once (verification runs in threads)."""
        self.code = parse_agency_code(code).text
        if signer is not None:
            self._check_identity(signer, verifier)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        self.transport = transport
        self.signer = signer
        self.verifier = verifier
        self.state_dir = Path(state_dir)
        self.concurrency = concurrency
        self.receipts = ReceiptStore(self.state_dir / "receipts")
        self._seals = SealChecker(verifier)
        self._submitted: dict[str, str] = {}  # submission id -> DocumentId, for this process's submissions
        self._ledger: InboxLedger | None = None

    def _check_identity(self, signer: Signer, verifier: Verifier) -> None:
        """Refuse, before anything is consumed or published, a certificate the hub would refuse this agency:
        one that names no agency code or another one, does not chain to the trusted roots, is expired or
        revoked. (Whether it is registered for the agency only the hub knows; it refuses AX404.)"""
        certified = verifier.check_certificate(signer.certificate, signer.chain)
        if certified != self.code:
            raise RegistryError(RefusalCode.CERT_WRONG_AGENCY,
                             f"the signing certificate is bound to agency {certified}, not {self.code}; "
                             "use this agency's own key and certificate")

    async def __aenter__(self) -> AgencyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the inbox ledger (the transport belongs to the caller)."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    @property
    def ledger(self) -> InboxLedger:
        if self._ledger is None:
            self._ledger = InboxLedger(self.state_dir / "inbox.db")
        return self._ledger

    # ------------------------------------------------------------------ sending

    def _submission(self, packet: bytes, priority: int | None, summary: PacketSummary | None) -> OutgoingMessage:
        if summary is None and priority is None:
            summary = summarize_packet(packet)
        if summary is not None and summary.sender != self.code:
            raise ValueError(f"the packet's sender (From/OrganId) is {summary.sender!r}, not this client's agency "
                             f"{self.code}; submit it with that agency's client")
        if priority is None:
            priority = summary.priority if summary is not None else 0
        submission = wire.new_submission_id()
        if summary is not None and summary.document_id:
            self._submitted[submission] = summary.document_id
            if len(self._submitted) > MAX_REMEMBERED:
                del self._submitted[next(iter(self._submitted))]  # the oldest: its receipt came long ago
        headers = {wire.H_SUBMISSION: submission, wire.H_AGENCY: self.code,
                   wire.H_DIGEST: hashlib.sha256(packet).hexdigest()}
        if summary is not None:
            headers[wire.H_KIND] = summary.kind
        return OutgoingMessage(wire.INTAKE_QUEUE, bytes(packet), submission, priority, headers)

    async def submit(self, packet: bytes, *, priority: int | None = None) -> str:
        """Publish one signed packet to the hub; returns its submission id once the broker holds it.

        `priority` defaults to the packet's OtherInfo/Priority (0 for status packets).
        """
        summary = None if priority is not None else await asyncio.to_thread(summarize_packet, packet)
        message = self._submission(packet, priority, summary)
        await self._publish([message])
        return message.message_id

    async def submit_many(self, packets: Iterable[bytes], *, priorities: Sequence[int] | None = None) -> list[str]:
        """Publish many signed packets (pipelined, in batches); submission ids in order.

        Raises like `submit`; packets published before the failure stay published,
        and sending them again is answered with their first receipt.
        """
        packets = list(packets)
        if priorities is not None and len(priorities) != len(packets):
            raise ValueError(f"{len(priorities)} priorities for {len(packets)} packets")
        summaries: list[PacketSummary | None]
        if priorities is None:
            summaries = list(await asyncio.to_thread(lambda: [summarize_packet(p) for p in packets]))
        else:
            summaries = [None] * len(packets)
        messages = [self._submission(p, None if priorities is None else priorities[i], summaries[i])
                    for i, p in enumerate(packets)]
        for start in range(0, len(messages), PUBLISH_BATCH):
            await self._publish(messages[start:start + PUBLISH_BATCH])
        return [m.message_id for m in messages]

    async def _publish(self, messages: list[OutgoingMessage]) -> None:
        # Through a broker outage the policy keeps trying (same message ids: the hub de-duplicates).
        try:
            outcomes = await publish_all(self.transport, messages, f"publishing {len(messages)} submissions")
        except TransportError as exc:
            raise TransportError(f"packets were not confirmed by the broker after {PATIENCE:.0f} s of retries "
                                 f"({exc}); they may or may not have been stored: send them again (the hub "
                                 "answers a repeat with its first receipt)") from exc
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is not None:
                raise UnroutableError(f"queue {message.queue!r} does not exist, so nothing was sent: the hub "
                                      "declares it when it starts (axis serve); check --broker") from outcome

    async def send_status(self, document: ResponseFor | DocumentPacket | str, code: StatusCode | str, *,
                          description: str | None = None, staff: StaffInfo | None = None,
                          inbox: Path | Iterable[Path] | None = None) -> str:
        """Compose, sign and submit a status packet about `document`; returns the submission id.

        `document` is a `ResponseFor`, the received `DocumentPacket`, or a DocumentId:
        one in the standard form is read as is, any other is looked up among the
        documents this agency stored (the inbox ledger, then the `inbox` folders).
        """
        if self.signer is None:
            raise ValueError("send_status needs a Signer: build the AgencyClient with signer=")
        if isinstance(document, str):
            document = self.response_for(document, inbox=inbox)
        elif isinstance(document, DocumentPacket):
            document = response_for_document(document)
        packet = new_status(Organization(self.code), document, StatusCode(code), description=description,
                            staff=staff)
        signed = await asyncio.to_thread(self.signer.sign, packet_to_bytes(packet))
        message = self._submission(signed, 0, None)
        proof = self._delivery_receipt(document)
        if proof is not None:
            # The hub accepts a recipient's status only once it holds the recipient's delivery receipt; the
            # receipt published by `pull` may still be on its way, so the status carries a copy.
            message = dataclasses.replace(message, headers={**message.headers,
                                                            wire.H_PROOF: base64.b64encode(proof).decode("ascii")})
        await self._publish([message])
        return message.message_id

    def _delivery_receipt(self, document: ResponseFor) -> bytes | None:
        """The signed delivery receipt this agency sent for `document`, if its ledger stored it."""
        if not document.document_id:
            return None
        found = [entry.receipt for entry in self.ledger.documents(document.document_id)
                 if entry.receipt and entry.facts.sender == (document.organ_id or entry.facts.sender)]
        return found[-1] if found else None

    def response_for(self, document_id: str, *, inbox: Path | Iterable[Path] | None = None) -> ResponseFor:
        """`ResponseFor` for a DocumentId: parsed, or read from the stored original (ledger, then `inbox`)."""
        folders = [inbox] if isinstance(inbox, Path) else list(inbox or ())
        stored = [entry.path for entry in self.ledger.documents(document_id) if entry.path.is_file()]
        return response_for_from_document_id(document_id, [*stored, *folders])

    # ------------------------------------------------------------------ receipts

    async def collect_receipts(self, wait: float, *, max_messages: int | None = None,
                               on_rejected: Callable[[Rejection], None] | None = None) -> list[ReceivedReceipt]:
        """Receive receipts until none arrives for `wait` seconds: verify, store, then ack each."""
        return await self._consume(wire.receipts_queue(self.code), lambda d: self._take_receipt(d, on_rejected),
                                   idle=wait, max_messages=max_messages)

    async def wait_for_intake(self, submission_ids: Iterable[str], timeout: float) -> dict[str, Receipt]:
        """The intake receipt of each submission, collecting until all are here or `timeout` passes.

        Reads the shared receipt folder, so a receipt another process of this
        agency collected counts too. Submissions without a receipt are missing
        from the result.
        """
        wanted = list(dict.fromkeys(submission_ids))
        wanted_set = set(wanted)
        found: dict[str, Receipt] = {}
        last_scan = -1.0

        def complete() -> bool:
            # Receipts this process takes are noted as they come; the shared folder
            # (other processes' receipts) is re-read at most twice a second.
            nonlocal last_scan
            if len(found) < len(wanted) and time.monotonic() - last_scan >= 0.5:
                for submission in wanted:
                    if submission not in found:
                        receipt = self.receipts.intake(submission)
                        if receipt is not None:
                            found[submission] = receipt
                last_scan = time.monotonic()
            return len(found) == len(wanted)

        async def take(delivery: Delivery) -> ReceivedReceipt | None:
            taken = await self._take_receipt(delivery, None)
            if taken is not None and taken.receipt.kind == "intake" and taken.submission in wanted_set:
                found.setdefault(taken.submission, taken.receipt)
            return taken

        if not complete():
            await self._consume(wire.receipts_queue(self.code), take, idle=None,
                                deadline=time.monotonic() + timeout, stop=complete)
            last_scan = -1.0
            complete()
        return {s: found[s] for s in wanted if s in found}

    def list_receipts(self) -> list[Receipt]:
        """Every receipt in the local store, oldest first."""
        return [receipt for _, receipt in self.receipts.all()]

    async def _take_receipt(self, delivery: Delivery,
                            on_rejected: Callable[[Rejection], None] | None) -> ReceivedReceipt | None:
        try:
            receipt, signer_code = await asyncio.to_thread(self._verify_receipt, delivery.body)
        except Refusal as refusal:
            await self._reject(delivery, f"receipt refused: {refusal}", "dead-letter", on_rejected)
            return None
        submission = delivery.headers.get(wire.H_SUBMISSION) or receipt.submission
        mismatch = self._intake_mismatch(receipt, submission)
        if mismatch is not None:
            await self._reject(delivery, f"receipt refused: {RefusalCode.RECEIPT_MISMATCH.label}: {mismatch}",
                               "dead-letter", on_rejected)
            return None
        try:
            path = await asyncio.to_thread(self.receipts.save, delivery.body, receipt, submission=submission)
        except ValueError as exc:  # ids that cannot name a file: not a receipt Axis issues
            await self._reject(delivery, f"receipt refused: {exc}", "dead-letter", on_rejected)
            return None
        except OSError as exc:
            await self._reject(delivery, f"cannot store the receipt in {self.receipts.directory}: {exc}", "retry",
                               on_rejected)
            return None
        await self._settle(delivery.ack())
        if receipt.kind == "intake" and submission is not None:
            self._submitted.pop(submission, None)
        return ReceivedReceipt(receipt, signer_code, submission, path)

    def _intake_mismatch(self, receipt: Receipt, submission: str | None) -> str | None:
        """Why an intake receipt (verified, the hub's) does not answer `submission`, or None.

        Only a duplicate's receipt names another submission (the first one, as first signed); a
        refusal always names the one it answers. A receipt for a submission this client made must
        be about the DocumentId it submitted. Otherwise a replayed genuine receipt could answer
        someone else's submission."""
        if receipt.kind != "intake" or submission is None:
            return None
        if receipt.outcome != "accepted" and receipt.submission != submission:
            return f"a {receipt.outcome} receipt for submission {receipt.submission}, not {submission}"
        expected = self._submitted.get(submission)
        if expected is not None and receipt.document_id is not None and receipt.document_id != expected:
            return f"a receipt about {receipt.document_id!r}; submission {submission} was {expected!r}"
        return None

    def _verify_receipt(self, data: bytes) -> tuple[Receipt, str]:
        result = self.verifier.verify_receipt(data)
        receipt = read_receipt(result.signed_root)
        signer = result.signer_code
        expected = wire.HUB_IDENTITY if receipt.kind in ("intake", "error") else receipt.recipient
        if signer != expected or receipt.issuer != signer:
            raise TrustError(RefusalCode.SIGNER_NOT_SENDER,
                             f"a {receipt.kind} receipt must be issued and signed by {expected}; this one names "
                             f"issuer {receipt.issuer!r} and is signed by {signer!r}")
        if receipt.sender is not None and receipt.sender != self.code:
            # Only receipts about this agency's own submissions and documents come to its queue.
            raise RegistryError(RefusalCode.RECEIPT_MISMATCH,
                             f"a {receipt.kind} receipt about a packet of {receipt.sender}, not of {self.code}")
        return receipt, signer

    # ------------------------------------------------------------------ receiving

    async def pull(self, out_dir: Path, *, wait: float, max_messages: int | None = None,
                   on_received: Callable[[Received], None] | None = None,
                   on_rejected: Callable[[Rejection], None] | None = None) -> list[Received]:
        """Receive deliveries until none arrives for `wait` seconds (or `max_messages` were taken).

        Each is verified, stored as `out_dir/<axis_id>.edxml` (exact bytes,
        fsynced), recorded, answered with a signed delivery receipt, then acked.
        A duplicate is not stored again; its receipt is re-sent. Returns what was
        stored or found stored, in completion order; `on_received` and
        `on_rejected` are told as it happens.
        """
        if self.signer is None:
            raise ValueError("pull needs a Signer to sign delivery receipts: build the AgencyClient with signer=")
        out_dir = Path(out_dir)
        private_directory(out_dir)
        _ = self.ledger  # opened here, once, rather than by racing worker threads
        return await self._consume(wire.inbox_queue(self.code),
                                   lambda d: self._take_delivery(d, out_dir, on_received, on_rejected),
                                   idle=wait, max_messages=max_messages)

    async def _take_delivery(self, delivery: Delivery, out_dir: Path,
                             on_received: Callable[[Received], None] | None,
                             on_rejected: Callable[[Rejection], None] | None) -> Received | None:
        try:
            received, receipt = await asyncio.to_thread(self._store_delivery, delivery, out_dir)
        except (Refusal, OSError, ValueError, sqlite3.Error) as exc:
            # Only Axis can seal: retrying a delivery without its seal cannot make it one.
            unsealed = isinstance(exc, Refusal) and exc.code is RefusalCode.UNSEALED_DELIVERY
            await self._reject(delivery, str(exc), "dead-letter" if unsealed else "retry", on_rejected)
            return None
        try:
            await retrying(f"publishing the delivery receipt of {received.axis_id}")(self.transport.publish)(
                wire.RECEIPTS_QUEUE, receipt,
                message_id=wire.receipt_message_id("delivery", received.axis_id, self.code),
                priority=delivery.priority,
                headers={wire.H_KIND: "receipt", wire.H_RECEIPT_KIND: "delivery", wire.H_AXIS_ID: received.axis_id,
                         wire.H_SENDER: received.sender, wire.H_RECIPIENT: self.code})
        except TransportError as exc:
            # Stored, so the application has it: announce it now. Not yet receipted: deliver it
            # again later, and the ledger turns that delivery into "re-send the receipt".
            if on_received is not None:
                on_received(received)
            await self._reject(delivery, f"stored, but the delivery receipt was not published: {exc}", "retry",
                               on_rejected)
            return received
        await self._settle(delivery.ack())
        if on_received is not None:
            on_received(received)
        return received

    def _store_delivery(self, delivery: Delivery, out_dir: Path) -> tuple[Received, bytes]:
        """Check, verify and store one delivery (blocking: runs in a worker thread)."""
        body = delivery.body
        axis_id = check_name_part(delivery.headers.get(wire.H_AXIS_ID), f"the delivery's {wire.H_AXIS_ID} header")
        digest = hashlib.sha256(body).hexdigest()
        announced = delivery.headers.get(wire.H_DIGEST)
        if announced != digest:
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"the body's SHA-256 is {digest}, but the hub announced {announced!r} "
                             f"({wire.H_DIGEST}): the bytes changed on the way; not stored")
        # Before the ledger: a forged repeat of a stored delivery must not even earn a receipt.
        self._seals.check(delivery.headers, axis_id, self.code, digest)
        entry = self.ledger.stored(axis_id)
        if entry is not None:
            return self._received(entry, duplicate=True), self._receipt_for(entry)
        result = self.verifier.verify(body)
        facts = _facts(result.signed_root)
        receipt = self._sign_delivery_receipt(axis_id, facts, digest)
        target = out_dir / f"{axis_id}.edxml"
        entry, duplicate = self.ledger.store(axis_id, body, target, facts, digest, receipt,
                                             sweep=delivery.redelivered or delivery.attempt > 1)
        return self._received(entry, duplicate=duplicate), self._receipt_for(entry)

    def _sign_delivery_receipt(self, axis_id: str, facts: PacketFacts, digest: str) -> bytes:
        receipt = Receipt(kind="delivery", outcome="delivered", issuer=self.code, time=now_utc(), axis_id=axis_id,
                          sender=facts.sender, recipient=self.code, document_id=facts.document_id, digest=digest)
        assert self.signer is not None
        return self.signer.sign_receipt(build_receipt(receipt))

    def _receipt_for(self, entry: InboxEntry) -> bytes:
        # The receipt recorded with the packet, so a repeat answers with the same bytes.
        return entry.receipt or self._sign_delivery_receipt(entry.axis_id, entry.facts, entry.digest)

    @staticmethod
    def _received(entry: InboxEntry, *, duplicate: bool) -> Received:
        return Received(entry.axis_id, entry.facts.kind, entry.facts.sender, entry.facts.document_id,
                        entry.facts.status_code, entry.digest, entry.path, duplicate)

    def received(self) -> list[Received]:
        """Everything the inbox ledger records as stored, oldest first."""
        return [self._received(entry, duplicate=False) for entry in self.ledger.entries()]

    # ------------------------------------------------------------------ consuming

    async def _reject(self, delivery: Delivery, reason: str, action: str,
                      on_rejected: Callable[[Rejection], None] | None) -> None:
        log.warning("%s %s on %r: %s", action, delivery.message_id, delivery.queue, reason)
        if on_rejected is not None:
            on_rejected(Rejection(delivery.queue, delivery.message_id, reason, action))
        settle = delivery.retry(reason) if action == "retry" else delivery.dead_letter(reason)
        await self._settle(settle)

    @staticmethod
    async def _settle(settling: Awaitable[None]) -> None:
        try:
            await settling
        except TransportError as exc:
            # The message comes back (lease expired, connection lost); the
            # ledger and the receipt store make the repeat harmless.
            log.warning("could not settle a delivery (%s); it will be delivered again", exc)

    async def _consume(self, queue: str, handle: Callable[[Delivery], Awaitable[_T | None]], *,
                       idle: float | None, deadline: float | None = None, max_messages: int | None = None,
                       stop: Callable[[], bool] | None = None) -> list[_T]:
        """Hand deliveries from `queue` to `handle`, `concurrency` at a time.

        Stops when no delivery came for `idle` seconds while there was room for
        one, at `deadline` (monotonic), after `max_messages`, or when `stop()`
        (checked between deliveries and at least every 0.2 s) says so. Every
        delivery taken is settled before the consumer closes.
        """
        results: list[_T] = []
        room = asyncio.Semaphore(self.concurrency)
        poll = 0.2 if stop is not None else None

        async def run(delivery: Delivery) -> None:
            try:
                outcome = await handle(delivery)
                if outcome is not None:
                    results.append(outcome)
            finally:
                room.release()

        async with self.transport.consume(queue, prefetch=max(self.concurrency * 2, 10)) as consumer:
            async with asyncio.TaskGroup() as tasks:
                taken, idle_since = 0, None
                while max_messages is None or taken < max_messages:
                    await room.acquire()
                    if stop is not None and stop():
                        room.release()
                        break
                    now = time.monotonic()
                    idle_since = idle_since if idle_since is not None else now  # idle counts while there is room
                    limits = [poll] if poll is not None else []
                    if idle is not None:
                        limits.append(idle_since + idle - now)
                    if deadline is not None:
                        limits.append(deadline - now)
                    timeout = min(limits) if limits else None
                    if (timeout is not None and timeout <= 0) or consumer.closed:
                        room.release()
                        break
                    got = await consumer.receive(1, timeout)
                    if not got:
                        room.release()
                        continue
                    taken, idle_since = taken + 1, None
                    tasks.create_task(run(got[0]))
        return results
