"""The watched-folder adapter (Domibus-FS / sedex style) for systems that only read and write files.

    root/outbox/   your system drops signed *.edxml here (write name.tmp, then rename)
    root/sent/     packets Axis holds, renamed <name>.<submission id>.edxml
    root/failed/   packets refused (before sending, by the gateway, or by the hub), each with
                   <name>.reason.txt saying why (`AX301 SIGNATURE_INVALID: ...`)
    root/inbox/    received packets, <axis id>.edxml, each once (take and remove them)
    root/state/    the client's state: receipts/ (every receipt, signed), inbox.db, client.db

Run it as `axis adapter folder --agency CODE --root DIR --gateway URL --credential-file FILE`.

Callers may rely on: a packet leaves `outbox/` only after Axis holds it (to
`sent/`) or it was refused (to `failed/`, with the refusal); a crash in
between sends it again, which the hub answers as a duplicate. A packet the
hub refuses after it reached `sent/` moves from there to `failed/` in the
round that learns the refusal (its intake receipt is in `state/receipts/`).
Every guarantee of `adapters.client.AgencyClient` holds for `inbox/` and the
receipts.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from adapters.client import AgencyClient, Received, ReceivedReceipt, Rejection, describe_refusal, summarize_packet
from adapters.edge import Edge, EdgeRefused
from adapters.files import fsync_directory, write_atomic
from axis.refusals import Refusal
from axis.trust import Signer, Verifier

BATCH = 500


@dataclass(frozen=True)
class SentFile:
    original: Path
    path: Path                 # where it is now: in sent/ or failed/
    submission: str | None     # None when it was refused before it was queued
    reason: str | None = None  # why it is in failed/


@dataclass
class Round:
    """What one `run_once` did."""

    sent: list[SentFile] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    receipts: list[ReceivedReceipt] = field(default_factory=list)
    refused: list[SentFile] = field(default_factory=list)     # moved from sent/ to failed/ this round
    rejected: list[Rejection] = field(default_factory=list)   # deliveries that failed verification


class FolderAdapter:
    """One agency's folders under `root`, served through an `AgencyClient` it owns."""

    def __init__(self, code: str, edge: Edge, root: Path, *, signer: Signer, verifier: Verifier,
                 max_attempts: int = 3, retry_delay: float = 1.0) -> None:
        """`max_attempts`, `retry_delay`: as `AgencyClient` tries deliveries that fail verification."""
        self.root = Path(root)
        self.outbox, self.sent, self.failed = self.root / "outbox", self.root / "sent", self.root / "failed"
        self.inbox = self.root / "inbox"
        for folder in (self.outbox, self.sent, self.failed, self.inbox):
            folder.mkdir(parents=True, exist_ok=True)
        self.client = AgencyClient(code, edge, signer=signer, verifier=verifier, state_dir=self.root / "state",
                                   max_attempts=max_attempts, retry_delay=retry_delay)

    def close(self) -> None:
        self.client.close()

    async def send_outbox(self, *, wait: float = 0.0) -> list[SentFile]:
        """Submit every `outbox/*.edxml`; move each to `sent/` or `failed/`.

        `wait`: seconds each submission gives the hub to decide (a refusal then goes to
        `failed/` at once; later ones are moved by `collect`)."""
        files = sorted(p for p in self.outbox.glob("*.edxml") if p.is_file() and not p.name.startswith("."))
        done: list[SentFile] = []
        for start in range(0, len(files), BATCH):
            chunk = files[start:start + BATCH]
            ready, refused = await asyncio.to_thread(self._read, chunk)
            done.extend(refused)
            if ready:
                submitted = await self.client.submit_each([data for _, data in ready], wait=wait)
                queued: list[tuple[Path, str]] = []
                for (path, _), item in zip(ready, submitted, strict=True):
                    if isinstance(item.error, EdgeRefused | Refusal | ValueError):
                        reason = (f"{item.error.code}: {item.error.message} (refused by the gateway)"
                                  if isinstance(item.error, EdgeRefused) else str(item.error))
                        done.append(await asyncio.to_thread(self._fail, path, reason))
                    elif item.error is not None:
                        raise item.error  # Axis was not reached: the file stays in outbox/ for the next round
                    elif item.intake is not None and item.intake.outcome == "refused":
                        done.append(await asyncio.to_thread(self._fail, path, item.intake.refusal or "refused",
                                                            item.submission))
                    else:
                        assert item.submission is not None
                        queued.append((path, item.submission))
                done.extend(await asyncio.to_thread(self._file_sent, queued))
        return done

    def _read(self, chunk: list[Path]) -> tuple[list[tuple[Path, bytes]], list[SentFile]]:
        ready, refused = [], []
        for path in chunk:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # taken back by the system that wrote it
            try:
                summary = summarize_packet(data)
                if summary.sender != self.client.code:
                    raise ValueError(f"the packet's sender (From/OrganId) is {summary.sender}, but this folder "
                                     f"belongs to {self.client.code}")
            except (Refusal, ValueError) as problem:
                refused.append(self._fail(path, str(problem)))
                continue
            ready.append((path, data))
        return ready, refused

    def _fail(self, path: Path, reason: str, submission: str | None = None, *, name: str | None = None) -> SentFile:
        """Move `path` to failed/<name> with <stem>.reason.txt beside it (the reason first, then the move)."""
        target = self.failed / (name or path.name)
        write_atomic(self.failed / f"{Path(target.name).stem}.reason.txt", (reason + "\n").encode())
        os.replace(path, target)
        fsync_directory(self.failed)
        fsync_directory(path.parent)
        return SentFile(path, target, submission, reason)

    def _file_sent(self, queued: list[tuple[Path, str]]) -> list[SentFile]:
        moved = []
        for path, submission in queued:
            target = self.sent / f"{path.stem}.{submission}.edxml"
            os.replace(path, target)
            moved.append(SentFile(path, target, submission))
        if moved:
            fsync_directory(self.sent)
            fsync_directory(self.outbox)
        return moved

    async def collect(self, *, wait: float = 0.0) -> tuple[list[ReceivedReceipt], list[SentFile]]:
        """Collect receipts (`AgencyClient.collect_receipts`); move what the hub refused from sent/ to failed/."""
        receipts = await self.client.collect_receipts(wait)
        refused = []
        for got in receipts:
            if got.receipt.kind == "intake" and got.outcome == "refused" and got.submission:
                refused.extend(await asyncio.to_thread(self._refused_after_sending, got))
        return receipts, refused

    def _refused_after_sending(self, got: ReceivedReceipt) -> list[SentFile]:
        moved = []
        for path in self.sent.glob(f"*.{got.submission}.edxml"):
            original = path.name.removesuffix(f".{got.submission}.edxml")
            reason = describe_refusal(got.receipt) or "refused"
            moved.append(self._fail(path, f"{reason} (submission {got.submission})", got.submission,
                                    name=f"{original}.edxml"))
        return moved

    async def run_once(self, *, wait: float = 1.0) -> Round:
        """Send the outbox, receive into `inbox/` (until nothing came for `wait` s), collect receipts."""
        result = Round()
        result.sent = await self.send_outbox()
        result.received = await self.client.pull(self.inbox, wait=wait, on_rejected=result.rejected.append)
        result.receipts, result.refused = await self.collect(wait=min(wait, 0.5))
        return result

    async def run(self, stop: asyncio.Event, *, wait: float = 5.0) -> None:
        """`run_once` again and again until `stop` is set."""
        while not stop.is_set():
            await self.run_once(wait=wait)
