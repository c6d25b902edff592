"""Intake: from submitted bytes to accepted documents, deliveries and receipts, in one transaction.

For a batch of submissions taken from `axis.intake`, in one hub worker
process (`workers.py`), all of it synchronous:

1. each packet is checked (safe parse, schema, signature, chain, revocation,
   signer = sender) — `verification.py`;
2. the registry decides (`_decide`): sender known, active, certificate
   registered, not renamed (documents); every recipient known and active, a
   renamed one (`axis agency rename`) replaced by its new code while its alias
   routes (docs/certificates.md); a status follows the rule of
   its code (`STATUS_RULES`: 13 from the original sender only; 01-06, 15, 16
   from a recipient whose delivery receipt is recorded or carried along); a
   repeated (sender, DocumentId) is a duplicate answered with the first receipt;
3. the receipts the hub asserts are built and signed, and each packet is
   sealed (`axis.seal`), by the axis's signer (`axis.signer`: one request for
   the batch's receipts and seals); an outcome is readable only by the agency whose
   credential submitted it (its `submissions` row), and a refusal nobody can
   be told about is dead-lettered;
4. ONE transaction writes, for the whole batch: documents, their exact bytes
   and seals, deliveries (which wait in the store for their recipients),
   intake receipts, status receipts and delivery-state changes, the outcome of
   every submission and audit entries.

Only after that commit are the submissions acknowledged, so a crash anywhere
re-delivers them, and the duplicate check turns the re-delivery into the
first outcome: nothing accepted is lost, nothing is delivered twice.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from axis import wire
from axis.hub.verification import Checked, Refused
from axis.logs import traffic
from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import RefusalCode
from axis.signer import AxisSigner
from axis.store import (
    AgencyAlias,
    Decision,
    Document,
    DuplicateDocument,
    NewAuditEntry,
    NewDocument,
    NewReceipt,
    NewSubmission,
    Store,
    state_for_status,
)

log = logging.getLogger("axis.hub.intake")

ACTOR = "hub"
REGISTRATION_TTL = 30.0  # seconds a certificate found registered is trusted without asking the store
RECALL = 1
STATUS_RECALL_REQUEST = "13"
# Who may send each status code (QCVN 102:2016 §4). A recipient's statuses move its delivery's state, so they
# count only once its adapter proved it stored the document (its delivery receipt is recorded).
STATUS_RULES = {STATUS_RECALL_REQUEST: "sender",
                **dict.fromkeys(("01", "02", "03", "04", "05", "06", "15", "16"), "receipted-recipient")}


@dataclass(frozen=True)
class Submission:
    """One submitted packet: a message from the intake queue, or a request the gateway decides where it arrives.

    `caller` and `credential` are set only by the gateway that authenticated the request (its own process,
    never a message's header): the submission is then recorded in the same transaction as its outcome. A
    message from the queue is read with the caller its `submissions` row names."""

    submission_id: str
    body: bytes | Path              # the exact bytes, or a file holding them (a large upload, see `data`)
    caller: str | None = None
    credential: str | None = None

    def data(self) -> bytes:
        """The exact bytes. A large upload stays in its file through the checks (parsed from there) and is read
        whole only to be written to the store."""
        return self.body.read_bytes() if isinstance(self.body, Path) else self.body


@dataclass
class _Plan:
    submission: Submission
    checked: Checked | None = None
    refusal: tuple[int, str] | None = None
    duplicate_of: str | None = None          # axis id of the first acceptance
    axis_id: str | None = None
    recipients: tuple[str, ...] = ()
    answers: str | None = None               # status: axis id of the document answered
    claimed_sender: str | None = None
    receipt: bytes | None = None             # the signed intake receipt to send back
    seal: str | None = None                  # accepted with recipients: the axis's seal (axis/seal.py)
    outcome: str = ""                        # accepted | duplicate | refused
    dead_letter: str | None = None           # refused with nobody to tell: the reason it is dead-lettered
    caller: str | None = None                # the agency whose credential submitted it (its submissions row)
    recorded: bool = False                   # a submissions row exists (the gateway or local client wrote it)
    on_timeline: bool = False                # a status from a recipient of the document it answers
    digest: str = ""                         # SHA-256 of the bytes, as the check computed it

    @property
    def sender(self) -> str | None:
        return self.checked.sender if self.checked else self.claimed_sender


@dataclass(frozen=True)
class Outcome:
    submission_id: str
    outcome: str                              # accepted | duplicate | refused
    axis_id: str | None = None
    refusal_code: int | None = None
    detail: str | None = None
    recipients: tuple[str, ...] = field(default=())
    dead_letter: str | None = None            # set: dead-letter the submission with this reason (no receipt went)
    receipt: bytes | None = None              # the signed intake receipt (a duplicate's: the first one)
    # For the log line of the decision (`axis.hub.traffic`), so that it needs no read of the store:
    sender: str | None = None                 # as the packet says (None when it could not be read)
    kind: str | None = None                   # document | status
    status: str | None = None                 # a status packet's StatusCode
    answers: str | None = None                # the axis id a status packet answers


def log_decisions(outcomes: Sequence[Outcome]) -> None:
    """One traffic line per decision (`axis.logs.traffic`), from the outcomes alone: said by the process that
    got them back from its workers (the hub's, the gateway's), never by the workers."""
    for o in outcomes:
        fields = {"submission": o.submission_id, "axis_id": o.axis_id, "sender": o.sender, "kind": o.kind}
        if o.outcome == "refused":
            code = RefusalCode.from_number(o.refusal_code) if o.refusal_code is not None else RefusalCode.INTERNAL
            traffic("refused", "refused submission %s from %s: %s: %s%s", o.submission_id, o.sender or "?",
                    code.label, o.detail, " (dead-lettered: nobody to answer)" if o.dead_letter else "",
                    code=code.number, name=code.name, detail=o.detail, **fields)
        elif o.outcome == "duplicate":
            traffic("duplicate", "duplicate of %s from %s (submission %s)", o.axis_id, o.sender, o.submission_id,
                    **fields)
        elif o.kind == "status":
            traffic("accepted", "accepted status %s from %s about %s (%s)", o.status, o.sender, o.answers, o.axis_id,
                    status=o.status, answers=o.answers, **fields)
        else:
            traffic("accepted", "accepted %s from %s to %s (submission %s)", o.axis_id, o.sender,
                    ", ".join(o.recipients), o.submission_id, recipients=list(o.recipients), **fields)


def _refuse(plan: _Plan, code: RefusalCode, detail: str) -> None:
    plan.refusal = (code.number, detail)


class Intake:
    """Turns batches of submissions into committed outcomes. Safe to run in several processes at once."""

    def __init__(self, store: Store, check: Callable[[Sequence[bytes | Path]], list[Checked | Refused]],
                 signer: AxisSigner) -> None:
        """`check` checks packets (`verification.check_packet` each); `signer` signs the receipts and seals
        the packets (the store keeps a seal's signature). A signer that fails (`SignerUnavailable`) fails
        the batch before its transaction: nothing of it is committed."""
        self._store = store
        self._check = check
        self._signer = signer
        # (code, fingerprint) → when it was last found registered; trusted for REGISTRATION_TTL seconds.
        self._registered: dict[tuple[str, str], float] = {}

    def process(self, batch: Sequence[Submission]) -> list[Outcome]:
        plans = [_Plan(submission=s) for s in batch]
        for plan, result in zip(plans, self._check([s.body for s in batch]), strict=True):
            plan.digest = result.digest
            if isinstance(result, Refused):
                plan.refusal = (result.code, result.detail)
                plan.claimed_sender = result.claimed_sender
            else:
                plan.checked = result
        self._decide(plans)
        to_sign = [p for p in plans if p.duplicate_of is None]
        # The seal every delivery of the packet is served with (axis/seal.py): the recipient checks that Axis
        # routed these bytes to it under this axis id, whoever served them. One signer request for both.
        to_seal = [p for p in to_sign if p.refusal is None and p.recipients and p.checked is not None]
        signed, seals = self._signer.sign_and_seal([build_receipt(self._intake_receipt(p)) for p in to_sign],
                                                   [(p.axis_id or "", p.recipients, p.digest) for p in to_seal])
        for plan, receipt in zip(to_sign, signed, strict=True):
            plan.receipt = receipt
        for plan, seal in zip(to_seal, seals, strict=True):
            plan.seal = seal[wire.H_SEAL]
        self._commit(plans)
        return [Outcome(p.submission.submission_id, p.outcome, p.axis_id or p.duplicate_of,
                        p.refusal[0] if p.refusal else None, p.refusal[1] if p.refusal else None, p.recipients,
                        p.dead_letter, p.receipt, p.sender, p.checked.kind if p.checked else None,
                        p.checked.status_code if p.checked else None, p.answers)
                for p in plans]

    # ------------------------------------------------------------ decisions

    def _decide(self, plans: list[_Plan]) -> None:
        codes = set()
        for plan in plans:
            if plan.checked:
                codes.add(plan.checked.sender)
                codes.update(plan.checked.recipients)
        states, found = self._store.agency_routes(codes)
        aliases: dict[str, AgencyAlias | None] = {code: found.get(code) for code in codes}
        callers = self._store.submission_agencies([p.submission.submission_id for p in plans])
        for plan in plans:
            plan.recorded = plan.submission.submission_id in callers or plan.submission.caller is not None
            # A row recorded earlier names the caller first (a repeated id keeps its first agency).
            plan.caller = callers.get(plan.submission.submission_id, plan.submission.caller)
        # One query for every duplicate check of the batch (documents, and what statuses answer).
        keys = []
        for plan in plans:
            c = plan.checked
            if c is None:
                continue
            if c.kind == "document":
                keys.append((c.sender, c.document_id, "document"))
            else:
                keys += [(c.answers_sender or "", c.document_id, "document"), (c.sender, self._status_key(c), "status")]
        known = self._store.find_documents(keys)
        for plan in plans:
            if plan.checked is not None:
                self._decide_one(plan, plan.checked, states, known, aliases)
            if plan.refusal is None and plan.duplicate_of is None:
                plan.axis_id = wire.new_axis_id()

    def _decide_one(self, plan: _Plan, c: Checked, states: dict[str, str],
                    known: dict[tuple[str, str, str], Document], aliases: dict[str, AgencyAlias | None]) -> None:
        if plan.caller is not None and plan.caller != c.sender:
            return _refuse(plan, RefusalCode.CALLER_NOT_SENDER,
                           f"signed by {c.sender}, submitted with a credential of {plan.caller}")
        state = states.get(c.sender) or self._store.agency_states([c.sender]).get(c.sender)
        if state is None:
            return _refuse(plan, RefusalCode.UNKNOWN_SENDER, f"{c.sender} is not registered on the axis")
        if state != "active":
            return _refuse(plan, RefusalCode.SENDER_SUSPENDED, f"{c.sender} is suspended")
        renamed = self._alias(c.sender, aliases)
        if renamed is not None and c.kind == "document":
            # A renamed code only answers what it received; new documents come from the code it became.
            return _refuse(plan, RefusalCode.SENDER_SUSPENDED,
                           f"{c.sender} was renamed {renamed.new_code} on {renamed.created_at:%Y-%m-%d}: send as "
                           f"{renamed.new_code}, signed with a certificate of {renamed.new_code}")
        if not self._certificate_registered(c.sender, c.fingerprint):
            return _refuse(plan, RefusalCode.CERT_NOT_REGISTERED,
                           f"certificate {c.fingerprint[:16]}… is not registered for {c.sender}")
        if c.kind == "status":
            original = known.get((c.answers_sender or "", c.document_id, "document"))
            if original is None:
                return _refuse(plan, RefusalCode.UNKNOWN_DOCUMENT,
                               f"no document {c.document_id!r} from {c.answers_sender} was carried by the axis")
            delivered_to = [d.recipient_code for d in self._store.deliveries(original.axis_id)]
            plan.answers = original.axis_id
            plan.on_timeline = c.sender in delivered_to
            rule = STATUS_RULES.get(c.status_code or "")
            if rule == "sender":
                if c.sender != original.sender_code:
                    return _refuse(plan, RefusalCode.NOT_ALLOWED,
                                   f"only the sender {original.sender_code} may send status {c.status_code} "
                                   f"about {c.document_id!r}")
                recipients = tuple(delivered_to)
            elif rule == "receipted-recipient":
                if c.sender not in delivered_to:
                    return _refuse(plan, RefusalCode.NOT_A_RECIPIENT,
                                   f"{c.document_id!r} was not delivered to {c.sender}")
                if not self._store.receipted([original.axis_id], "delivery", recipient=c.sender, code="delivered"):
                    return _refuse(plan, RefusalCode.STATUS_BEFORE_RECEIPT,
                                   f"no delivery receipt from {c.sender} for {c.document_id!r} is recorded, so it "
                                   f"may not send status {c.status_code} about it yet")
                recipients = (original.sender_code,)
            else:
                return _refuse(plan, RefusalCode.NOT_ALLOWED, f"status code {c.status_code!r} is not routed by Axis")
            key = self._status_key(c)
            if (first := known.get((c.sender, key, "status"))) is not None:
                plan.duplicate_of = first.axis_id
                return None
        else:
            recipients = c.recipients
            if c.business_type == RECALL and c.business_document_id:
                # A recall reaches every recipient of the original, whatever its To list says.
                original = self._store.find_document(c.sender, c.business_document_id, "document")
                if original is not None:
                    extra = [d.recipient_code for d in self._store.deliveries(original.axis_id)]
                    recipients = tuple(dict.fromkeys((*recipients, *extra)))
            if (first := known.get((c.sender, c.document_id, "document"))) is not None:
                plan.duplicate_of = first.axis_id
                return None
        self._look_up(recipients, states, aliases)
        recipients, gone = self._route(recipients, aliases)
        if gone:
            return _refuse(plan, RefusalCode.UNKNOWN_RECIPIENT, gone)
        missing = [code for code in recipients if code not in states]
        if missing:
            states.update(self._store.agency_states(missing))
        unknown = [code for code in recipients if code not in states]
        if unknown:
            return _refuse(plan, RefusalCode.UNKNOWN_RECIPIENT, f"not registered: {', '.join(unknown)}")
        suspended = [code for code in recipients if states[code] != "active"]
        if suspended:
            return _refuse(plan, RefusalCode.RECIPIENT_SUSPENDED, f"suspended: {', '.join(suspended)}")
        plan.recipients = recipients
        return None

    def _look_up(self, codes: Sequence[str], states: dict[str, str], aliases: dict[str, AgencyAlias | None]) -> None:
        """The states and aliases of codes only this plan names (a recall's earlier recipients, a status's
        parties), in one query."""
        missing = [code for code in codes if code not in aliases]
        if missing:
            found_states, found = self._store.agency_routes(missing)
            states.update(found_states)
            aliases.update((code, found.get(code)) for code in missing)

    def _alias(self, code: str, aliases: dict[str, AgencyAlias | None]) -> AgencyAlias | None:
        if code not in aliases:  # the new code of a renamed one, met while following its renames
            aliases[code] = self._store.aliases([code]).get(code)
        return aliases[code]

    def _route(self, recipients: tuple[str, ...],
               aliases: dict[str, AgencyAlias | None]) -> tuple[tuple[str, ...], str | None]:
        """The recipients with each renamed code replaced by the code it became (`axis agency rename`), while
        its alias routes; (), why when one's alias ended (its code is then unknown to routing)."""
        routed = []
        now = self._store.clock()
        for code in recipients:
            seen = [code]
            while (alias := self._alias(code, aliases)) is not None:
                if alias.until <= now:
                    return (), (f"{alias.old_code} was renamed {alias.new_code}; documents to it were routed to "
                                f"{alias.new_code} until {alias.until:%Y-%m-%d}: address {alias.new_code}")
                code = alias.new_code
                if code in seen:  # only a table written behind Axis's back holds a loop
                    return (), f"the renamed codes {' -> '.join([*seen, code])} form a loop"
                seen.append(code)
            routed.append(code)
        return tuple(dict.fromkeys(routed)), None

    @staticmethod
    def _status_key(c: Checked) -> str:
        # The same agency saying the same thing about the same document at the same time is one status.
        return f"{c.document_id}#{c.status_code}#{c.status_timestamp}"

    def _certificate_registered(self, code: str, fingerprint: str) -> bool:
        # Only positive answers are cached, briefly: a certificate registered a moment ago works at
        # once, and one an operator withdraws stops working within REGISTRATION_TTL seconds.
        key = (code, fingerprint)
        now = time.monotonic()
        if now - self._registered.get(key, -REGISTRATION_TTL) < REGISTRATION_TTL:
            return True
        if self._store.certificate_registered(code, fingerprint):
            self._registered[key] = now
            return True
        self._registered.pop(key, None)
        return False

    # ------------------------------------------------------------- receipts

    @staticmethod
    def _intake_receipt(plan: _Plan) -> Receipt:
        c = plan.checked
        if plan.refusal is not None:
            code = RefusalCode.from_number(plan.refusal[0])
            return Receipt(kind="intake", outcome="refused", issuer=wire.HUB_IDENTITY, time=now_utc(),
                           submission=plan.submission.submission_id, sender=plan.sender,
                           document_id=c.document_id if c else None,
                           digest=c.digest if c else None, refusal_code=code.number, refusal_name=code.name,
                           refusal_detail=plan.refusal[1])
        assert c is not None
        return Receipt(kind="intake", outcome="accepted", issuer=wire.HUB_IDENTITY, time=now_utc(),
                       axis_id=plan.axis_id, submission=plan.submission.submission_id, sender=c.sender,
                       document_id=c.document_id, digest=c.digest)

    @staticmethod
    def _reader(plan: _Plan, registered: set[str]) -> str | None:
        """Who may read the outcome: the agency whose credential submitted it (its submissions row); for a
        message nobody recorded (written straight to the queue), the verified sender, or for a packet whose
        signature could not be verified, the claimed sender, if registered. Never a party named only by a
        header: anyone who writes to the queue can write one."""
        if plan.caller is not None:
            return plan.caller
        if plan.checked is not None:
            return plan.checked.sender if plan.checked.sender in registered else None
        if plan.claimed_sender and plan.claimed_sender in registered:
            return plan.claimed_sender
        return None

    # --------------------------------------------------------------- commit

    def _commit(self, plans: list[_Plan]) -> None:
        with self._store.write() as tx:
            accepted = [p for p in plans if p.refusal is None and p.duplicate_of is None]
            inserted = tx.insert_documents([(self._new_document(p), p.submission.body) for p in accepted])
            for plan, result in zip(accepted, inserted, strict=True):
                if isinstance(result, DuplicateDocument):  # another hub worker won the race
                    plan.duplicate_of, plan.axis_id, plan.receipt = result.existing_axis_id, None, None
            accepted = [p for p in accepted if p.duplicate_of is None]
            tx.insert_deliveries_many({p.axis_id: p.recipients for p in accepted if p.axis_id is not None})

            receipts: list[NewReceipt] = []
            decisions: list[Decision] = []
            audit: list[NewAuditEntry] = []
            registered = set(tx.agency_states({p.sender for p in plans if p.sender}))
            for plan in plans:
                if plan.duplicate_of is None and plan.refusal is not None:
                    self._refused(plan, registered, receipts, decisions, audit)
                elif plan.duplicate_of is None:
                    self._accepted(tx, plan, receipts, decisions, audit)
            # Written before duplicates are answered: a duplicate may answer an original of this very batch.
            tx.add_receipts(receipts)
            for plan in plans:
                if plan.duplicate_of is not None:
                    self._duplicate(tx, plan, registered, decisions, audit)
            # Submissions decided where they arrived are recorded here, with their outcome; a row that exists
            # (a repeated request) is left as it is.
            tx.add_submissions([NewSubmission(p.submission.submission_id, p.submission.caller,
                                              p.submission.credential, p.digest)
                                for p in plans if p.submission.caller is not None])
            tx.decide_submissions(decisions)
            tx.audit_many(audit)

    @staticmethod
    def _new_document(plan: _Plan) -> NewDocument:
        c, seal = plan.checked, plan.seal
        assert c is not None and plan.axis_id is not None
        if c.kind == "status":
            return NewDocument(axis_id=plan.axis_id, sender_code=c.sender, document_id=Intake._status_key(c),
                               kind="status", priority=c.priority, signer_fingerprint=c.fingerprint,
                               response_for=plan.answers, seal=seal)
        return NewDocument(axis_id=plan.axis_id, sender_code=c.sender, document_id=c.document_id,
                           kind="document", business_type=c.business_type, priority=c.priority,
                           signer_fingerprint=c.fingerprint, seal=seal)

    def _accepted(self, tx, plan: _Plan, receipts: list, decisions: list, audit: list) -> None:
        c, axis_id = plan.checked, plan.axis_id
        assert c is not None and axis_id is not None and plan.receipt is not None
        plan.outcome = "accepted"
        receipts.append(NewReceipt(axis_id=axis_id, kind="intake", body=plan.receipt, code="accepted"))
        decisions.append(Decision(plan.submission.submission_id, plan.caller or c.sender, "accepted", axis_id,
                                  None, None, plan.receipt))
        data = {"sender": c.sender, "document_id": c.document_id, "digest": c.digest, "size": c.size,
                "recipients": list(plan.recipients), "kind": c.kind, "submission": plan.submission.submission_id}
        if c.kind == "status":
            assert plan.answers is not None and c.status_code is not None
            data.update(status=c.status_code, answers=plan.answers)
            body = plan.submission.data()
            if c.status_code == STATUS_RECALL_REQUEST:
                # The sender's request concerns each recipient: it shows on each one's timeline.
                receipts += [NewReceipt(axis_id=plan.answers, kind="status", body=body,
                                        recipient_code=recipient, code=c.status_code,
                                        detail=f"recall requested by {c.sender} ({axis_id})")
                             for recipient in plan.recipients]
            else:
                receipts.append(NewReceipt(axis_id=plan.answers, kind="status", body=body,
                                           recipient_code=c.sender, code=c.status_code,
                                           detail=f"status packet {axis_id}"))
                new_state = state_for_status(c.status_code)
                if new_state is not None:
                    moved = tx.transition(plan.answers, c.sender, new_state)
                    data["state"] = str(new_state) if moved else "unchanged"
        else:
            data.update(business_type=c.business_type, priority=c.priority)
        audit.append(NewAuditEntry(actor=ACTOR, action="accepted", subject=axis_id, data=data))
        if c.kind == "status":
            # What the status did to the document it answers, in an entry about that document: it binds the
            # status receipt and the delivery's new state (the store attaches rows by subject).
            audit.append(NewAuditEntry(actor=ACTOR, action="status", subject=plan.answers, data={
                "status": c.status_code, "from": c.sender, "packet": axis_id, "state": data.get("state")}))

    def _refused(self, plan: _Plan, registered: set[str], receipts: list, decisions: list, audit: list) -> None:
        assert plan.refusal is not None
        plan.outcome = "refused"
        code = RefusalCode.from_number(plan.refusal[0])
        c = plan.checked
        if c is not None and c.kind == "status":
            # A refused status is never silent: the log, and the timeline of the document it answers.
            log.warning("status %s about %s from %s refused: %s: %s", c.status_code, c.document_id, c.sender,
                        code.label, plan.refusal[1])
            if plan.answers is not None and plan.on_timeline and plan.receipt is not None:
                receipts.append(NewReceipt(axis_id=plan.answers, kind="error", body=plan.receipt,
                                           recipient_code=c.sender, code=str(code.number),
                                           detail=f"status {c.status_code} refused: {plan.refusal[1]}"[:500]))
        reader = self._reader(plan, registered)
        if reader is not None or plan.recorded:
            decisions.append(Decision(plan.submission.submission_id, reader, "refused", None, code.number,
                                      plan.refusal[1][:2000], plan.receipt))
        else:
            # Nobody to answer: the submission is parked on axis.intake.dlq with its reason, for operators.
            plan.dead_letter = (f"{RefusalCode.SENDER_UNKNOWN.label}: no receipt sent ({code.label}: "
                                f"{plan.refusal[1]})")[:500]
            log.warning("submission %s refused (%s) and dead-lettered: %s", plan.submission.submission_id,
                        code.label, plan.dead_letter)
        audit.append(NewAuditEntry(actor=ACTOR, action="refused", subject=plan.submission.submission_id, data={
            "code": code.number, "name": code.name, "detail": plan.refusal[1][:500],
            "sender": plan.sender, "document_id": c.document_id if c else None,
            "digest": c.digest if c else None, "reader": reader, "submitted_by": plan.caller,
            "dead_lettered": plan.dead_letter is not None}))
        if code is RefusalCode.INTERNAL:
            log.error("internal error refusing submission %s: %s", plan.submission.submission_id, plan.refusal[1])

    def _duplicate(self, tx, plan: _Plan, registered: set[str], decisions: list, audit: list) -> None:
        plan.outcome = "duplicate"
        assert plan.duplicate_of is not None
        first = tx.get_receipt(plan.duplicate_of, "intake", code="accepted")
        reader = self._reader(plan, registered)
        # The first receipt, as first signed: the sender learns the one true outcome again.
        plan.receipt = first.body if first is not None else None
        decisions.append(Decision(plan.submission.submission_id, reader, "duplicate", plan.duplicate_of, None, None,
                                  plan.receipt))
        audit.append(NewAuditEntry(actor=ACTOR, action="duplicate", subject=plan.duplicate_of, data={
            "submission": plan.submission.submission_id, "sender": plan.sender,
            "digest": plan.checked.digest if plan.checked else None}))
