"""The CPU-bound half of intake, run in worker processes: parse, validate, verify, read.

Verification is the expensive step (c14n, digests, signature math), so it
never runs on the hub's event loop. Each worker process builds its `Verifier`
and the hub's receipt `Signer` once (keys and certificates parsed once) and
then checks packets in batches, which keeps inter-process traffic to one
round trip per batch.

Fields are read only from the tree the signature verifier returns as signed
(`VerificationResult.signed_root`), never from the bytes as received.

Callers may rely on `check_packets` returning, for each input, either a
`Checked` (the packet is authentic, well-formed and names valid agency codes)
or a `Refused` (with a stable refusal number), and never raising for bad input.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from axis.edxml import Limits, parse_agency_code, parse_xml, validate
from axis.refusals import PacketError, Refusal, RefusalCode


@dataclass(frozen=True)
class TrustSettings:
    """What a worker needs to verify packets and sign receipts (paths, so it pickles)."""

    trust_roots: Path
    crl: Path | None
    hub_key: Path
    hub_cert: Path
    allow_sha1_for: frozenset[str] = frozenset()
    lenient_codes: bool = False
    max_packet_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Checked:
    """An authentic packet, as its signed tree says."""

    kind: str                          # "document" | "status"
    sender: str                        # canonical agency code; equals the signer's certificate code
    fingerprint: str                   # the signer certificate's SHA-256
    document_id: str                   # documents: DocumentId; statuses: ResponseFor/DocumentId
    digest: str                        # SHA-256 of the exact bytes received
    size: int
    priority: int = 0
    recipients: tuple[str, ...] = ()   # documents: the To list, canonical codes, in order, no repeats
    business_type: int | None = None
    business_document_id: str | None = None  # the document a recall/update/replacement targets
    answers_sender: str | None = None  # statuses: ResponseFor/OrganId
    status_code: str | None = None
    status_timestamp: str | None = None


@dataclass(frozen=True)
class Refused:
    code: int
    detail: str
    digest: str
    claimed_sender: str | None = None  # unverified, for the audit entry only


# ------------------------------------------------------------- worker process

_state: dict[str, object] = {}


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a hub killed with SIGKILL: ask Linux to send it SIGTERM then."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the hub, which stops its workers
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the pool's own shutdown still stops workers on a clean exit
    if os.getppid() != parent:  # the hub died before the line above took effect
        os._exit(0)


def _init(settings: TrustSettings, parent: int | None = None) -> None:
    from axis.trust import Signer, Verifier

    if parent is not None:
        _die_with_parent(parent)

    _state["settings"] = settings
    _state["verifier"] = Verifier.from_files(settings.trust_roots, settings.crl,
                                             allow_sha1_for=settings.allow_sha1_for,
                                             lenient_codes=settings.lenient_codes)
    _state["signer"] = Signer.from_files(settings.hub_key, settings.hub_cert)
    _state["crl_mtime"] = _mtime(settings.crl)
    _state["crl_checked"] = time.monotonic()


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path else None
    except OSError:
        return None


def _refresh_crl() -> None:
    """Pick up a re-published CRL within seconds, without restarting the hub."""
    settings: TrustSettings = _state["settings"]  # type: ignore[assignment]
    if settings.crl is None or time.monotonic() - _state["crl_checked"] < 5:  # type: ignore[operator]
        return
    _state["crl_checked"] = time.monotonic()
    mtime = _mtime(settings.crl)
    if mtime != _state["crl_mtime"]:
        from axis.trust import keys
        _state["verifier"].replace_crls(keys.load_crls(settings.crl))  # type: ignore[attr-defined]
        _state["crl_mtime"] = mtime


def _code(text: str, lenient: bool) -> str:
    return parse_agency_code(text, lenient=lenient).text


def _claimed_sender(data: bytes) -> str | None:
    try:
        root = parse_xml(data, Limits(max_bytes=len(data) + 1))
        found = root.find(".//{*}MessageHeader/{*}From/{*}OrganId")
        return None if found is None else (found.text or "").strip()[:64] or None
    except Refusal:
        return None


_NS = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
_HEADER = f"{_NS}edXMLEnvelope/{_NS}edXMLHeader"


def _text(node, path: str) -> str:  # noqa: ANN001
    found = node.find(path)
    return "" if found is None or found.text is None else found.text.strip()


def _business(header):  # noqa: ANN001, ANN202
    """`Bussiness` as the standard spells it, or `Business` as some systems do."""
    trace = header.find(f"{_NS}TraceHeaderList")
    if trace is None:
        return None
    found = trace.find(f"{_NS}Bussiness")
    return found if found is not None else trace.find(f"{_NS}Business")


def _facts(root, digest: str, size: int, fingerprint: str, lenient: bool) -> Checked:  # noqa: ANN001
    """The routing facts, read from the signed tree (already schema-valid) with a few lookups.

    The full model (`read_packet`) costs about as much as the signature check itself;
    routing needs a dozen fields.
    """
    header = root.find(_HEADER)
    message = header.find(f"{_NS}MessageHeader")
    sender = _code(_text(message, f"{_NS}From/{_NS}OrganId"), lenient)
    status_code = _text(message, f"{_NS}StatusCode")
    if status_code:
        return Checked(kind="status", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                       document_id=_text(message, f"{_NS}ResponseFor/{_NS}DocumentId"),
                       answers_sender=_code(_text(message, f"{_NS}ResponseFor/{_NS}OrganId"), lenient),
                       status_code=status_code, status_timestamp=_text(message, f"{_NS}Timestamp"))
    recipients = tuple(dict.fromkeys(_code(_text(to, f"{_NS}OrganId"), lenient)
                                     for to in message.iterfind(f"{_NS}To")))
    priority = _text(message, f"{_NS}OtherInfo/{_NS}Priority")
    business = _business(header)
    business_type, business_document_id = 0, None
    if business is not None:
        doc_type = _text(business, f"{_NS}BussinessDocType") or _text(business, f"{_NS}BusinessDocType")
        business_type = int(doc_type) if doc_type else 0
        business_document_id = _text(business, f"{_NS}DocumentId") or None
    return Checked(kind="document", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                   document_id=_text(message, f"{_NS}DocumentId"), priority=int(priority) if priority else 0,
                   recipients=recipients, business_type=business_type,
                   business_document_id=business_document_id)


def _check_one(data: bytes) -> Checked | Refused:
    settings: TrustSettings = _state["settings"]  # type: ignore[assignment]
    digest = hashlib.sha256(data).hexdigest()
    try:
        root = parse_xml(data, Limits(max_bytes=settings.max_packet_bytes))
        validate(root)
        # Parsed once: the verifier takes the tree over and returns the signed tree to read from.
        result = _state["verifier"].verify(root)  # type: ignore[attr-defined]
        return _facts(result.signed_root, digest, len(data), result.fingerprint, settings.lenient_codes)
    except Refusal as refusal:
        return Refused(refusal.code.number, refusal.detail or refusal.code.message, digest, _claimed_sender(data))
    except Exception as exc:  # noqa: BLE001 - a bug must not take the batch down; it is refused and logged
        return Refused(RefusalCode.INTERNAL.number, f"{type(exc).__name__}: {exc}", digest, None)


def check_packets(datas: Sequence[bytes]) -> list[Checked | Refused]:
    """Runs in a worker: check each packet (see the module docstring)."""
    _refresh_crl()
    return [_check_one(data) for data in datas]


def sign_receipts(receipts: Sequence[bytes]) -> list[bytes]:
    """Runs in a worker: sign Axis receipts with the hub key."""
    signer = _state["signer"]
    return [signer.sign_receipt(data) for data in receipts]  # type: ignore[attr-defined]


def verify_receipts(datas: Sequence[bytes]) -> list[tuple[str, bytes] | Refused]:
    """Runs in a worker: verify receipts signed by agencies; (signer code, signed receipt XML) or Refused."""
    from lxml import etree

    _refresh_crl()
    out: list[tuple[str, bytes] | Refused] = []
    for data in datas:
        digest = hashlib.sha256(data).hexdigest()
        try:
            result = _state["verifier"].verify_receipt(data)  # type: ignore[attr-defined]
            out.append((result.signer_code, etree.tostring(result.signed_root)))
        except Refusal as refusal:
            out.append(Refused(refusal.code.number, refusal.detail or refusal.code.message, digest))
    return out


# ---------------------------------------------------------------- the pool

class VerificationPool:
    """Worker processes doing the CPU work of the hub; `workers=0` runs it in one thread instead.

    Batches are split across workers so that both cores work on one large batch.
    """

    def __init__(self, settings: TrustSettings, workers: int | None = None) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        if self.workers > 0:
            # Spawned, not forked: a fork would copy the hub's event loop, signal handlers and threads.
            self._executor: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init, initargs=(settings, os.getpid()))
        else:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, initializer=_init, initargs=(settings,))

    async def _map(self, fn, items: Sequence) -> list:  # noqa: ANN001
        if not items:
            return []
        loop = asyncio.get_running_loop()
        parts = max(1, min(self.workers, len(items) // 8 or 1))
        size = -(-len(items) // parts)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self._executor, fn, chunk) for chunk in chunks))
        return [item for chunk in results for item in chunk]

    async def check(self, datas: Sequence[bytes]) -> list[Checked | Refused]:
        return await self._map(check_packets, list(datas))

    async def sign(self, receipts: Sequence[bytes]) -> list[bytes]:
        return await self._map(sign_receipts, list(receipts))

    async def verify_receipts(self, datas: Sequence[bytes]) -> list[tuple[str, bytes] | Refused]:
        return await self._map(verify_receipts, list(datas))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
