"""The agency SDK: send signed packets to Axis, receive what is addressed to you, keep every receipt.

One `AgencyClient` per agency and process, built once with the agency's
`Signer` and a `Verifier` (keys and certificates parsed once) and an `Edge`
(`adapters.edge`): `GatewayEdge` for HTTP to `axis gateway` (what agencies
use), `LocalEdge` for the axis operator's own machine. The client never
touches the broker or the database.

| method | edge calls | what happens |
|---|---|---|
| `submit*`, `send_status` | `submit` | queued for the hub; the intake receipt stored if the answer has it |
| `wait_for_intake`, `intake` | `outcome` | the outcome of submissions: verify, store the receipt |
| `collect_receipts` | `outcome`, `receipts` | pending submissions' outcomes; delivery and error receipts |
| `pull` | `inbox`, `fetch`, `ack`, `fail` | verify, store, then acknowledge with a signed delivery receipt |

What callers may rely on
------------------------
- `submit*` returns a submission id only once Axis durably holds the packet
  (queued for the hub, or already decided); it raises `PacketError` for bytes
  that are not an edXML packet, `ValueError` for another agency's packet,
  `EdgeRefused` when the gateway refused it before queueing (too large, not
  the caller's), `EdgeUnavailable` when Axis could not be reached within the
  retry policy's patience (`axis.retry`). Nothing is dropped silently, and
  submitting a packet again is safe: the hub answers a duplicate with its
  first receipt.
- Every intake receipt is verified (signed by the hub, about this agency's
  packet, answering that submission and that DocumentId) and stored in
  `state_dir/receipts/` (`adapters.receipt_store`) before the outcome is
  reported. A submission still queued when `submit` returned is remembered in
  `state_dir/client.db` (`adapters.journal`), so `collect_receipts` in any
  later process of this agency learns its outcome.
- Persist first, then acknowledge (QCVN 102 practice, reference §9): a
  delivered packet is in the output folder, fsynced, and in the inbox ledger
  (`state_dir/inbox.db`, `adapters.inbox`) before `ack` tells Axis. Killing
  the process at any moment loses nothing: what was not acknowledged is
  listed again by the next `pull`, and the ledger turns it into "acknowledge
  again with the same receipt", so the application sees each packet once, as
  `<out_dir>/<axis_id>.edxml`, byte for byte as its sender signed it.
- Every delivery is verified before it is stored: the digest Axis announced,
  Axis's seal over axis id, recipient and digest (`axis.seal`), the XML
  signature, chain, revocation and signer = sender. One without a valid seal
  or digest is failed at once (AX411: `fail`, the sender gets an error
  receipt); one that fails otherwise is tried again (after `retry_delay`
  seconds, doubling, counted across processes) and failed after
  `max_attempts`. Neither is stored, nor silently dropped.
- The signing certificate is checked when the client is built: one the axis
  would refuse for this agency (no agency code, another code, not chaining to
  the trusted roots, expired, revoked) raises a `Refusal` (TrustError 3xx, or
  RegistryError AX410 for another agency's) before anything is sent.
- Several processes of one agency may share a state dir: they see each
  other's receipts and stored packets, and never store a packet twice.
- Verification, signing and file writes run in worker threads, never on the
  event loop. The edge belongs to the caller (`close()` does not close it).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.documents import response_for_document, response_for_from_document_id
from adapters.edge import (
    Answer,
    Edge,
    EdgeError,
    EdgeNotFound,
    EdgeRefused,
    EdgeUnavailable,
    Waiting,
    write_delivery,
)
from adapters.files import temporary_name
from adapters.inbox import InboxEntry, InboxLedger, PacketFacts
from adapters.journal import Journal
from adapters.receipt_store import ReceiptStore, check_name_part, receipt_file_name
from axis import wire
from axis.edxml import (
    DEFAULT_LIMITS,
    DocumentPacket,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusCode,
    packet_to_bytes,
    parse_agency_code,
    parse_xml_file,
    routing_facts,
)
from axis.edxml.compose import new_status
from axis.private import private_directory
from axis.receipt import Receipt, build_receipt, now_utc, read_receipt
from axis.refusals import Refusal, RefusalCode, RegistryError, TrustError
from axis.seal import SealChecker
from axis.transport import TransportError
from axis.trust import Signer, Verifier

log = logging.getLogger("adapters.client")

SUBMIT_PARALLEL = 16          # submissions in flight at once (each is one HTTP request)
OUTCOME_PARALLEL = 8          # outcome long-polls in flight at once
PAGE = 100                    # inbox items listed per request
INLINE_BODY = 256 * 1024      # bytes: a delivery up to this size is fetched with others (Edge.fetch_many)
MAX_OUTCOME_WAIT = 25.0       # one long-poll never asks for more (proxies cut idle requests at 30-60 s)
SENT_PAGE = 1000              # documents per `sent` page when collect_receipts looks for news
SENT_MARGIN = 3600.0          # seconds `sent(since=)` reaches back before the oldest tracked document (clock skew)
WAITING = ("queued", "published")  # delivery states in which a recipient has not answered yet


@dataclass(frozen=True)
class PacketSummary:
    """What an (unverified) packet says about itself: enough to route a submission."""

    kind: str              # "document" | "status"
    sender: str            # From/OrganId
    document_id: str | None
    priority: int          # OtherInfo/Priority; 0 for status packets
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceivedReceipt:
    """A verified Axis receipt, stored in `path`."""

    receipt: Receipt
    signer_code: str       # the agency code of the certificate that signed it (AXIS for the hub)
    submission: str | None  # the submission an intake receipt answers
    path: Path

    @property
    def outcome(self) -> str:
        """accepted / duplicate / refused / delivered / failed, seen from `submission`."""
        return receipt_outcome(self.receipt, self.submission)


@dataclass(frozen=True)
class Intake:
    """Where a submission stands, as this client verified it.

    `outcome` is queued (no hub decided yet), accepted, duplicate, refused, or
    unknown (Axis knows no such submission of this agency). `receipt` is the
    verified, stored intake receipt of a decided one (None if it failed to verify:
    see `problem`)."""

    submission: str
    outcome: str
    axis_id: str | None = None
    code: str | None = None        # refusal code, e.g. "AX301"
    message: str | None = None
    receipt: Receipt | None = None
    path: Path | None = None
    problem: str | None = None

    @property
    def decided(self) -> bool:
        return self.outcome in ("accepted", "duplicate", "refused")

    @property
    def refusal(self) -> str | None:
        """`AX301 SIGNATURE_INVALID: detail`, or the gateway's code and message, for a refused one."""
        if self.outcome != "refused":
            return None
        if self.receipt is not None:
            described = describe_refusal(self.receipt)
            if described:
                return described
        return f"{self.code or 'refused'}: {self.message or ''}".rstrip(": ")


@dataclass(frozen=True)
class Submitted:
    """One packet of `submit_each`: its submission id, or the error that kept it from being queued."""

    submission: str | None
    error: Exception | None = None
    intake: Intake | None = None   # set when the answer came with the submission (decided already)


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
    duplicate: bool        # True: stored by an earlier try; only the acknowledgement was sent again


@dataclass(frozen=True)
class Rejection:
    """A delivery this client could not take: tried again later (`retry`) or given up on (`fail`)."""

    axis_id: str
    reason: str
    action: str            # "retry" | "fail"


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


def summarize_packet(data: bytes | Path) -> PacketSummary:
    """Read a packet's routing fields (safe parser, no schema check); `PacketError` if it is not edXML.
    `data`: its bytes, or the file that holds them (parsed from there: a large packet is not read whole).

    Only the few header fields routing needs are read (a full model costs ~7x
    more, which matters for folders of thousands); the hub checks the rest.
    """
    facts = routing_facts(parse_xml_file(data) if isinstance(data, Path) else data)
    return PacketSummary(facts.kind, facts.sender, facts.document_id or None, facts.priority,
                         tuple(facts.recipients))


def _facts(root: etree._Element) -> PacketFacts:
    facts = routing_facts(root)
    return PacketFacts(facts.kind, facts.sender, facts.document_id or None, facts.status_code)


async def _bounded(limit: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the coroutine functions in `jobs`, `limit` at a time; the first error cancels the rest and is raised
    as itself (not as an ExceptionGroup, so callers catch `TransportError` as usual)."""
    room = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with room:
            await job()

    try:
        async with asyncio.TaskGroup() as tasks:
            for job in jobs:
                tasks.create_task(run(job))
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


class AgencyClient:
    """The Axis SDK for one agency. See the module docstring for the guarantees."""

    def __init__(self, code: str, edge: Edge, *, signer: Signer | None = None, verifier: Verifier,
                 state_dir: Path, concurrency: int = 4, max_attempts: int = 3, retry_delay: float = 1.0) -> None:
        """`signer` is needed to receive (delivery receipts) and for `send_status`; sending
        pre-signed packets and collecting receipts need only the `verifier`.
        `concurrency`: deliveries handled at once (verification runs in threads).
        `max_attempts`, `retry_delay`: a delivery that fails verification is tried again
        after `retry_delay` s, doubling, and failed (`Edge.fail`) at the `max_attempts`-th failure."""
        self.code = parse_agency_code(code).text
        if signer is not None:
            self._check_identity(signer, verifier)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts!r}")
        self.edge = edge
        self.signer = signer
        self.verifier = verifier
        self.state_dir = Path(state_dir)
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.receipts = ReceiptStore(self.state_dir / "receipts")
        self._seals = SealChecker(verifier)
        self._ledger: InboxLedger | None = None
        self._journal: Journal | None = None

    def _check_identity(self, signer: Signer, verifier: Verifier) -> None:
        """Refuse, before anything is sent, a certificate the hub would refuse this agency: one that
        names no agency code or another one, does not chain to the trusted roots, is expired or
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
        """Close the inbox ledger and the journal (the edge belongs to the caller)."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    @property
    def ledger(self) -> InboxLedger:
        if self._ledger is None:
            self._ledger = InboxLedger(self.state_dir / "inbox.db")
        return self._ledger

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.state_dir / "client.db")
        return self._journal

    # ------------------------------------------------------------------ sending

    def _check_sender(self, summary: PacketSummary) -> None:
        if summary.sender != self.code:
            raise ValueError(f"the packet's sender (From/OrganId) is {summary.sender!r}, not this client's agency "
                             f"{self.code}; submit it with that agency's client")

    async def submit(self, packet: bytes, *, wait: float = 0.0) -> str:
        """Hand one signed packet to Axis; its submission id once Axis durably holds it.

        With `wait`, Axis is given up to that many seconds to decide, and the intake
        receipt is stored if it did (else `wait_for_intake` / `collect_receipts` get it).
        """
        [done] = await self.submit_each([packet], wait=wait)
        if done.error is not None:
            raise done.error
        assert done.submission is not None
        return done.submission

    async def submit_many(self, packets: Iterable[bytes], *, wait: float = 0.0) -> list[str]:
        """Hand many signed packets to Axis (several at a time); submission ids in order.

        Raises the first packet's error after every packet was tried; the others
        stay submitted, and sending them again is answered with their first receipt.
        """
        done = await self.submit_each(packets, wait=wait)
        for item in done:
            if item.error is not None:
                raise item.error
        return [item.submission for item in done if item.submission is not None]

    async def submit_each(self, packets: Iterable[bytes | Path], *, wait: float = 0.0) -> list[Submitted]:
        """Hand many signed packets to Axis; for each, its submission id or why it was not queued.

        `wait`: seconds each request gives Axis to decide, so that the answer carries the intake
        receipt (one request per packet instead of a submission and then an outcome). Once one
        request comes back undecided after waiting (no hub, or a backlog), the packets after it are
        only handed over: a thousand packets never wait `wait` seconds each.

        Errors per packet: `PacketError` (not edXML), `ValueError` (another agency's),
        `EdgeRefused` (refused by the gateway), `EdgeError` / `TransportError` (not
        reached: it may or may not be queued; sending it again is safe).
        """
        # A file is read where it is needed (its routing fields, then the upload), never held whole.
        packets = [p if isinstance(p, Path) else bytes(p) for p in packets]

        def read_all() -> list[PacketSummary | Exception]:
            found: list[PacketSummary | Exception] = []
            for packet in packets:
                try:
                    summary = summarize_packet(packet)
                    self._check_sender(summary)
                    found.append(summary)
                except (Refusal, ValueError) as exc:
                    found.append(exc)
            return found

        summaries = await asyncio.to_thread(read_all)
        results: list[Submitted | None] = [None] * len(packets)
        # The client chooses each submission id and notes it in the journal before sending: a request
        # repeated after a lost answer is the same submission, and a crash anywhere leaves the id for
        # `collect_receipts` to ask about (Axis answers 404 for one it never got).
        ids = {i: wire.new_submission_id() for i, s in enumerate(summaries) if not isinstance(s, Exception)}
        await asyncio.to_thread(self.journal.add_pending, [
            (ids[i], s.document_id, s.recipients) for i, s in enumerate(summaries) if isinstance(s, PacketSummary)])

        async def one(index: int) -> None:
            nonlocal wait
            summary = summaries[index]
            if isinstance(summary, Exception):
                results[index] = Submitted(None, summary)
                return
            waited = wait
            try:
                answer = await self.edge.submit(packets[index], wait=waited, submission=ids[index])
            except EdgeUnavailable as exc:  # may or may not be queued: the journal keeps asking
                results[index] = Submitted(None, exc)
                return
            except (EdgeError, TransportError) as exc:  # refused before it was queued
                await asyncio.to_thread(self.journal.drop_pending, [ids[index]])
                results[index] = Submitted(None, exc)
                return
            if waited > 0 and not answer.decided:
                wait = 0.0  # Axis did not decide in time: the packets after this one are only handed over
            intake = await self._settle_answer(answer, summary.document_id, summary.recipients,
                                               kind=summary.kind)
            results[index] = Submitted(answer.submission, None, intake if intake.decided else None)

        await _bounded(SUBMIT_PARALLEL, [partial(one, i) for i in range(len(packets))])
        return [r if r is not None else Submitted(None, RuntimeError("not tried")) for r in results]

    async def _settle_answer(self, answer: Answer, document_id: str | None, recipients: Iterable[str] = (),
                             *, kind: str | None = None) -> Intake:
        """Verify and store a decided answer's intake receipt (a queued one stays in the journal). Its `Intake`."""
        if not answer.decided:
            await asyncio.to_thread(self.journal.add_pending, [(answer.submission, document_id, tuple(recipients))])
            return Intake(answer.submission, "queued")
        intake = await asyncio.to_thread(self._store_intake, answer, document_id)
        if intake.outcome == "accepted" and intake.axis_id and kind != "status" and recipients:
            await asyncio.to_thread(self.journal.track, [(intake.axis_id, recipients)])
        await asyncio.to_thread(self.journal.drop_pending, [answer.submission])
        return intake

    def _store_intake(self, answer: Answer, document_id: str | None) -> Intake:
        """Verify and store the receipt of a decided answer (blocking: runs in a worker thread)."""
        base = Intake(answer.submission, answer.outcome, answer.axis_id, answer.code, answer.message)
        if answer.receipt is None:
            return base
        try:
            receipt, _ = self._verify_receipt(answer.receipt)
            mismatch = self._intake_mismatch(receipt, answer.submission, document_id)
            if mismatch is not None:
                raise RegistryError(RefusalCode.RECEIPT_MISMATCH, mismatch)
            path = self.receipts.save(answer.receipt, receipt, submission=answer.submission)
        except (Refusal, ValueError) as exc:
            log.warning("the intake receipt of submission %s is not stored: %s", answer.submission, exc)
            return replace(base, problem=f"intake receipt refused: {exc}")
        outcome = receipt_outcome(receipt, answer.submission)
        return Intake(answer.submission, outcome, receipt.axis_id or answer.axis_id, answer.code, answer.message,
                      receipt, path)

    def _intake_mismatch(self, receipt: Receipt, submission: str, document_id: str | None) -> str | None:
        """Why an intake receipt (verified, the hub's) does not answer `submission`, or None.

        Only a duplicate's receipt names another submission (the first one, as first signed); a
        refusal always names the one it answers. A receipt for a submission this client made must
        be about the DocumentId it submitted. Otherwise a replayed genuine receipt could answer
        someone else's submission."""
        if receipt.kind != "intake":
            return f"a {receipt.kind} receipt where an intake receipt was expected"
        if receipt.outcome != "accepted" and receipt.submission != submission:
            return f"a {receipt.outcome} receipt for submission {receipt.submission}, not {submission}"
        if document_id is not None and receipt.document_id is not None and receipt.document_id != document_id:
            return f"a receipt about {receipt.document_id!r}; submission {submission} was {document_id!r}"
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
            raise RegistryError(RefusalCode.RECEIPT_MISMATCH,
                                f"a {receipt.kind} receipt about a packet of {receipt.sender}, not of {self.code}")
        return receipt, signer

    async def send_status(self, document: ResponseFor | DocumentPacket | str, code: StatusCode | str, *,
                          description: str | None = None, staff: StaffInfo | None = None,
                          inbox: Path | Iterable[Path] | None = None, wait: float = 0.0) -> str:
        """Compose, sign and submit a status packet about `document`; returns the submission id.

        `document` is a `ResponseFor`, the received `DocumentPacket`, or a DocumentId:
        one in the standard form is read as is, any other is looked up among the
        documents this agency stored (the inbox ledger, then the `inbox` folders).
        (The hub holds this agency's delivery receipt once `pull` acknowledged the
        document: Axis records acknowledgements synchronously.)
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
        return await self.submit(signed, wait=wait)

    def response_for(self, document_id: str, *, inbox: Path | Iterable[Path] | None = None) -> ResponseFor:
        """`ResponseFor` for a DocumentId: parsed, or read from the stored original (ledger, then `inbox`)."""
        folders = [inbox] if isinstance(inbox, Path) else list(inbox or ())
        stored = [entry.path for entry in self.ledger.documents(document_id) if entry.path.is_file()]
        return response_for_from_document_id(document_id, [*stored, *folders])

    # ------------------------------------------------------------------ outcomes and receipts

    async def intake(self, submission_ids: Iterable[str], timeout: float) -> dict[str, Intake]:
        """Where each submission stands, waiting up to `timeout` s for those still queued.

        A receipt already in the shared receipt folder (stored by this or another
        process of the agency) answers without asking Axis.
        """
        wanted = list(dict.fromkeys(submission_ids))
        found: dict[str, Intake] = {}
        for submission in wanted:
            receipt = await asyncio.to_thread(self.receipts.intake, submission)
            if receipt is not None:
                found[submission] = Intake(submission, receipt_outcome(receipt, submission), receipt.axis_id,
                                           None, None, receipt, None)
        if found:  # decided, and its receipt is on disk: nothing left to ask about them
            await asyncio.to_thread(self.journal.drop_pending, list(found))
        deadline = time.monotonic() + timeout
        queue = [s for s in wanted if s not in found]

        async def ask(submission: str) -> None:
            document_id, recipients = await asyncio.to_thread(self.journal.document_of, submission)
            while True:
                left = max(0.0, deadline - time.monotonic())
                try:
                    answer = await self.edge.outcome(submission, wait=min(left, MAX_OUTCOME_WAIT))
                except EdgeNotFound:
                    await asyncio.to_thread(self.journal.drop_pending, [submission])
                    found[submission] = Intake(submission, "unknown", problem="Axis knows no such submission "
                                                                              "of this agency")
                    return
                if answer.decided or left <= MAX_OUTCOME_WAIT:
                    break
            if answer.decided:
                intake = await self._settle_answer(answer, document_id, recipients)
            else:
                intake = Intake(submission, "queued")
            if intake.decided:
                await asyncio.to_thread(self.journal.drop_pending, [submission])
            found[submission] = intake

        await _bounded(OUTCOME_PARALLEL, [partial(ask, s) for s in queue])
        return {s: found[s] for s in wanted if s in found}

    async def wait_for_intake(self, submission_ids: Iterable[str], timeout: float) -> dict[str, Receipt]:
        """The intake receipt of each submission, waiting up to `timeout` s; those without one are missing."""
        return {s: i.receipt for s, i in (await self.intake(submission_ids, timeout)).items()
                if i.receipt is not None}

    def list_receipts(self) -> list[Receipt]:
        """Every receipt in the local store, oldest first."""
        return [receipt for _, receipt in self.receipts.all()]

    async def collect_receipts(self, wait: float = 0.0) -> list[ReceivedReceipt]:
        """Learn and store what Axis has for this agency's earlier submissions; the receipts newly stored.

        1. The outcome of every submission still pending in the journal (waiting up
           to `wait` s for those still queued): its verified intake receipt.
        2. For every accepted document still tracked: the delivery receipts its
           recipients signed and the error receipts of deliveries that failed (the
           document's timeline, `Edge.receipts`), each verified; a document is no
           longer tracked once every recipient has answered with a delivery receipt,
           or with an error receipt and a delivery the operator purged (a parked one
           may still be replayed and delivered).
        Status packets and their receipts are not tracked (their outcome is the intake receipt).
        """
        stored: list[ReceivedReceipt] = []
        pending = await asyncio.to_thread(self.journal.pending)
        if pending:
            for submission, intake in (await self.intake(pending, wait)).items():
                if intake.receipt is not None and intake.path is not None:
                    stored.append(ReceivedReceipt(intake.receipt, wire.HUB_IDENTITY, submission, intake.path))
        tracked = await asyncio.to_thread(self.journal.tracked)
        states: dict[str, dict[str, str]] = {}
        if tracked:
            states = await self._moved(tracked)
            tracked = {a: r for a, r in tracked.items() if a in states}

        async def timeline(axis_id: str, recipients: list[str]) -> None:
            try:
                items = await self.edge.receipts(axis_id)
            except EdgeNotFound:
                await asyncio.to_thread(self.journal.untrack, [axis_id])
                return
            got, delivered, errors = await asyncio.to_thread(self._store_timeline, axis_id, items)
            stored.extend(got)
            # An error receipt is the last word only once the delivery stays failed: a parked one may be
            # replayed by the operator and delivered after all (then its delivery receipt follows).
            waiting = {code for code, state in states[axis_id].items() if state in (*WAITING, "parked")}
            if set(recipients) <= delivered | (errors - waiting):
                await asyncio.to_thread(self.journal.untrack, [axis_id])

        await _bounded(OUTCOME_PARALLEL, [partial(timeline, a, r) for a, r in tracked.items()])
        return stored

    async def _moved(self, tracked: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """The tracked documents a recipient has moved on (delivered, parked, failed, answered), each with its
        recipients' states, from a few pages of `Edge.sent` rather than one timeline request per document;
        those not listed count as moved (with no states)."""
        oldest = await asyncio.to_thread(self.journal.oldest_tracked)
        since = dt.datetime.fromtimestamp((oldest or time.time()) - SENT_MARGIN, dt.UTC).isoformat()
        states: dict[str, dict[str, str]] = {}
        after: str | None = None
        while True:
            items, after = await self.edge.sent(since=since, after=after, limit=SENT_PAGE)
            for item in items:
                if item["axis_id"] in tracked:
                    states[item["axis_id"]] = dict(item.get("recipients") or {})
            if after is None or len(states) == len(tracked):
                break
        return {axis_id: states.get(axis_id, {}) for axis_id, recipients in tracked.items()
                if axis_id not in states or any(states[axis_id].get(code, "queued") not in WAITING
                                                for code in recipients)}

    def _store_timeline(self, axis_id: str, items: list[dict]) -> tuple[list[ReceivedReceipt], set[str], set[str]]:
        """Verify and store the delivery and error receipts of a timeline; (new ones, recipients with a delivery
        receipt, recipients with an error receipt)."""
        stored: list[ReceivedReceipt] = []
        delivered: set[str] = set()
        errors: set[str] = set()
        for item in items:
            body = item.get("body")
            if item.get("kind") not in ("delivery", "error") or not body:
                continue
            try:
                receipt, signer = self._verify_receipt(body)
                if receipt.kind not in ("delivery", "error") or receipt.axis_id != axis_id:
                    continue  # e.g. a refused status about this document, on its timeline
                if receipt.recipient:
                    (delivered if receipt.kind == "delivery" else errors).add(receipt.recipient)
                path = self.receipts.directory / receipt_file_name(receipt, None)
                if path.exists():
                    continue
                path = self.receipts.save(body, receipt, submission=None)
            except (Refusal, ValueError) as exc:
                log.warning("a %s receipt on the timeline of %s is not stored: %s", item.get("kind"), axis_id, exc)
                continue
            stored.append(ReceivedReceipt(receipt, signer, None, path))
        return stored, delivered, errors

    # ------------------------------------------------------------------ receiving

    async def pull(self, out_dir: Path, *, wait: float, max_messages: int | None = None, kind: str | None = None,
                   on_received: Callable[[Received], None] | None = None,
                   on_rejected: Callable[[Rejection], None] | None = None) -> list[Received]:
        """Take what waits for this agency, urgent first, until nothing new came for `wait` seconds
        (or `max_messages` were handled).

        Each delivery is verified, stored as `out_dir/<axis_id>.edxml` (exact bytes,
        fsynced), recorded in the ledger, then acknowledged with this agency's signed
        delivery receipt. One stored before (a crash before its acknowledgement) is
        not stored again; it is acknowledged again with the same receipt. Returns
        what was stored or found stored, in completion order; `on_received` and
        `on_rejected` are told as it happens.
        """
        if self.signer is None:
            raise ValueError("pull needs a Signer to sign delivery receipts: build the AgencyClient with signer=")
        out_dir = Path(out_dir)
        private_directory(out_dir)
        _ = self.ledger, self.journal  # opened here, once, rather than by racing worker threads
        results: list[Received] = []
        not_before: dict[str, float] = {}   # axis id -> when this pull may try it again
        handled = 0
        idle_since = time.monotonic()
        cursor: str | None = None
        scan_fresh = scan_listed = False

        def room() -> int:
            return PAGE if max_messages is None else min(PAGE, max_messages - handled)

        while room() > 0:
            idle_left = idle_since + wait - time.monotonic()
            poll = max(0.0, idle_left) if cursor is None and not scan_listed else 0.0
            items, following = await self.edge.inbox(kind=kind, after=cursor, limit=PAGE, wait=poll)
            if cursor is None:
                scan_fresh = scan_listed = False
            now = time.monotonic()
            fresh = [i for i in items if not_before.get(i.axis_id, 0.0) <= now][:room()]
            scan_listed = scan_listed or bool(items)
            if fresh:
                scan_fresh = True
                handled += len(fresh)
                stored: list[tuple[Received, bytes]] = []
                try:
                    fetched = await self._fetch_small(fresh)
                    await _bounded(self.concurrency, [partial(self._take, item, out_dir, stored, not_before,
                                                              on_rejected, fetched) for item in fresh])
                except Exception:  # what was stored is acknowledged even when the page ends on an error
                    await self._acknowledge(stored, results, not_before, on_received, on_rejected)
                    raise  # (not when the pull is cancelled: then the next pull acknowledges it, from the ledger)
                await self._acknowledge(stored, results, not_before, on_received, on_rejected)
                idle_since = time.monotonic()
            if following is not None and len(items) >= PAGE:
                cursor = following
                continue
            cursor = None
            if not scan_fresh:
                idle_left = idle_since + wait - time.monotonic()
                if idle_left <= 0:
                    break
                if scan_listed:
                    # Only deliveries waiting for their retry are listed: a long-poll would answer at once.
                    due = min((t for t in not_before.values() if t > time.monotonic()), default=now + 0.2)
                    await asyncio.sleep(max(0.01, min(idle_left, due - time.monotonic(), 0.5)))
                    scan_listed = False
            else:
                scan_fresh = scan_listed = False
        return results

    async def _fetch_small(self, items: list[Waiting]) -> dict[str, tuple[bytes, dict[str, str]] | EdgeError]:
        """The bodies of the small deliveries among `items`, `wire.MAX_FETCH_BATCH` a request (`Edge.fetch_many`,
        within its `wire.MAX_FETCH_BATCH_BYTES`): axis id -> (bytes, headers), or the item's error. What this
        leaves out (a large body, a request that failed whole) `_take` fetches alone."""
        found: dict[str, tuple[bytes, dict[str, str]] | EdgeError] = {}
        chunk: list[str] = []
        room = wire.MAX_FETCH_BATCH_BYTES

        async def flush() -> None:
            try:
                answers = await self.edge.fetch_many(chunk)
            except (EdgeError, TransportError) as exc:  # each is fetched alone, which reports it
                log.info("fetching %d deliveries at once failed (%s); fetching each alone", len(chunk), exc)
                return
            found.update(zip(chunk, answers, strict=True))

        for item in items:
            if not 0 < item.size <= INLINE_BODY:
                continue
            if len(chunk) == wire.MAX_FETCH_BATCH or item.size > room:
                await flush()
                chunk, room = [], wire.MAX_FETCH_BATCH_BYTES
            chunk.append(item.axis_id)
            room -= item.size
        if chunk:
            await flush()
        return found

    async def _take(self, item: Waiting, out_dir: Path, stored: list[tuple[Received, bytes]],
                    not_before: dict[str, float], on_rejected: Callable[[Rejection], None] | None,
                    fetched: dict[str, tuple[bytes, dict[str, str]] | EdgeError]) -> None:
        """Fetch (unless `_fetch_small` did: it is taken out of `fetched`), verify and store one delivery; add it
        and its delivery receipt to `stored`, for `_acknowledge` (or say why not to `on_rejected`)."""
        axis_id = item.axis_id
        given = fetched.pop(axis_id, None)
        try:
            check_name_part(axis_id, "the delivery's axis id")
        except Refusal as exc:
            await self._reject(axis_id, exc, not_before, on_rejected)
            return
        # The body goes to a temporary file beside its final name as it arrives, is verified from there and
        # renamed into place: a large packet is never whole in memory (the ledger owns the file from then on).
        target = out_dir / f"{axis_id}.edxml"
        tmp = temporary_name(target)
        try:
            await asyncio.to_thread(private_directory, out_dir)
            if isinstance(given, EdgeNotFound):
                raise given
            if isinstance(given, tuple):
                headers = given[1]
                digest = await asyncio.to_thread(write_delivery, tmp, given[0])
            else:  # a large body, or one the batch did not bring (it did not fit, or the request failed)
                headers, digest = await self.edge.fetch_to(axis_id, tmp)
        except EdgeNotFound:
            tmp.unlink(missing_ok=True)
            return  # taken meanwhile (another process of this agency acknowledged it)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            received, receipt = await asyncio.to_thread(self._store_delivery, axis_id, tmp, digest, headers, target)
        except (Refusal, OSError, ValueError, sqlite3.Error) as exc:
            tmp.unlink(missing_ok=True)
            await self._reject(axis_id, exc, not_before, on_rejected)
            return
        stored.append((received, receipt))

    async def _acknowledge(self, stored: list[tuple[Received, bytes]], results: list[Received],
                           not_before: dict[str, float], on_received: Callable[[Received], None] | None,
                           on_rejected: Callable[[Rejection], None] | None) -> None:
        """Acknowledge what a page stored, `wire.MAX_ACK_BATCH` deliveries a request (`Edge.ack_many`), and
        announce each."""
        for start in range(0, len(stored), wire.MAX_ACK_BATCH):
            chunk = stored[start:start + wire.MAX_ACK_BATCH]
            answers: list[dict[str, Any] | EdgeError | TransportError]
            try:
                answers = list(await self.edge.ack_many([(received.axis_id, receipt) for received, receipt in chunk]))
            except (EdgeError, TransportError) as exc:  # the whole request: never read as "acknowledged already"
                answers = [exc] * len(chunk)
            # EdgeNotFound: acknowledged already (by another process, or by a try whose answer was lost).
            acknowledged = [not isinstance(answer, EdgeError | TransportError) or isinstance(answer, EdgeNotFound)
                            for answer in answers]
            settled = [received.axis_id for (received, _), done in zip(chunk, acknowledged, strict=True) if done]
            await asyncio.to_thread(self.journal.settled, settled)
            for (received, _), answer, done in zip(chunk, answers, acknowledged, strict=True):
                # Stored, so the application has it: announced whatever the answer.
                results.append(received)
                if on_received is not None:
                    on_received(received)
                if not done:
                    # The next pull lists it again, and the ledger turns that into "acknowledge again".
                    reason = f"stored, but the acknowledgement was not recorded: {answer}"
                    log.warning("%s: %s", received.axis_id, reason)
                    not_before[received.axis_id] = float("inf")
                    if on_rejected is not None:
                        on_rejected(Rejection(received.axis_id, reason, "retry"))

    async def _reject(self, axis_id: str, exc: Exception, not_before: dict[str, float],
                      on_rejected: Callable[[Rejection], None] | None) -> None:
        reason = str(exc)
        # Only Axis can seal: trying again cannot make a delivery without its seal (or with other bytes) one.
        final = isinstance(exc, Refusal) and exc.code is RefusalCode.UNSEALED_DELIVERY
        local = isinstance(exc, OSError | sqlite3.Error)  # our disk, not the delivery: never counted against it
        count = 0 if local else await asyncio.to_thread(self.journal.attempt, axis_id, reason)
        if not local and (final or count >= self.max_attempts):
            try:
                await self.edge.fail(axis_id, reason)
            except (EdgeNotFound, EdgeRefused) as problem:  # gone, or acknowledged meanwhile (409)
                log.info("%s could not be reported failed: %s", axis_id, problem)
            await asyncio.to_thread(self.journal.settled, [axis_id])
            action = "fail"
            not_before[axis_id] = float("inf")
        else:
            action = "retry"
            not_before[axis_id] = time.monotonic() + self.retry_delay * 2 ** max(0, count - 1)
        log.warning("%s %s: %s", action, axis_id, reason)
        if on_rejected is not None:
            on_rejected(Rejection(axis_id, reason, action))

    def _store_delivery(self, axis_id: str, tmp: Path, digest: str, headers: dict[str, str],
                        target: Path) -> tuple[Received, bytes]:
        """Check, verify and store one delivery whose bytes are in the file `tmp` (their SHA-256: `digest`),
        to be renamed to `target` (blocking: runs in a worker thread). `tmp` is removed unless stored."""
        served = headers.get(wire.H_AXIS_ID)
        if served is not None and served != axis_id:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                                f"asked for {axis_id}, served {served}; not stored")
        announced = headers.get(wire.H_DIGEST)
        if announced != digest:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                                f"the body's SHA-256 is {digest}, but Axis announced {announced!r} "
                                f"({wire.H_DIGEST}): the bytes changed on the way; not stored")
        # Before the ledger: a forged repeat of a stored delivery must not even earn a receipt.
        self._seals.check(headers, axis_id, self.code, digest)
        entry = self.ledger.stored(axis_id)
        if entry is not None:
            tmp.unlink(missing_ok=True)
            return self._received(entry, duplicate=True), self._receipt_for(entry)
        seen_before = not self.journal.first_sight(axis_id)
        result = self.verifier.verify(parse_xml_file(tmp, DEFAULT_LIMITS))
        facts = _facts(result.signed_root)
        del result  # the tree: the file is what is stored
        receipt = self._sign_delivery_receipt(axis_id, facts, digest)
        entry, duplicate = self.ledger.store(axis_id, tmp, target, facts, digest, receipt, sweep=seen_before)
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


__all__ = ["AgencyClient", "Intake", "PacketSummary", "Received", "ReceivedReceipt", "Rejection",
           "Submitted", "describe_refusal", "receipt_outcome", "summarize_packet"]
