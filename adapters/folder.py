"""The watched-folder adapter (Domibus-FS / sedex style) for systems that only read and write files.

    root/outbox/   your system drops signed *.edxml here (write name.tmp, then rename)
    root/sent/     sent packets, renamed <name>.<submission id>.edxml once the broker holds them
    root/failed/   packets refused before sending, with <name>.reason.txt saying why
    root/inbox/    received packets, <axis id>.edxml, each once (take and remove them)
    root/state/    the client's state: receipts/ (every receipt, signed) and inbox.db

Callers may rely on: a packet leaves `outbox/` only after the broker stored it
(to `sent/`) or it was refused locally (to `failed/`, with the refusal); a
crash in between sends it again, which the hub answers as a duplicate. Every
guarantee of `adapters.client.AgencyClient` holds for `inbox/` and the receipts.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from adapters.client import AgencyClient, Received, ReceivedReceipt, summarize_packet
from adapters.files import fsync_directory, write_atomic
from axis.refusals import Refusal
from axis.transport import Transport
from axis.trust import Signer, Verifier

BATCH = 500


@dataclass(frozen=True)
class SentFile:
    original: Path
    path: Path                 # where it is now: in sent/ or failed/
    submission: str | None     # None when it was refused before sending
    reason: str | None = None


@dataclass
class Round:
    """What one `run_once` did."""

    sent: list[SentFile] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    receipts: list[ReceivedReceipt] = field(default_factory=list)


class FolderAdapter:
    """One agency's folders under `root`, served through an `AgencyClient` it owns."""

    def __init__(self, code: str, transport: Transport, root: Path, *, signer: Signer, verifier: Verifier) -> None:
        self.root = Path(root)
        self.outbox, self.sent, self.failed = self.root / "outbox", self.root / "sent", self.root / "failed"
        self.inbox = self.root / "inbox"
        for folder in (self.outbox, self.sent, self.failed, self.inbox):
            folder.mkdir(parents=True, exist_ok=True)
        self.client = AgencyClient(code, transport, signer=signer, verifier=verifier, state_dir=self.root / "state")

    def close(self) -> None:
        self.client.close()

    async def send_outbox(self) -> list[SentFile]:
        """Submit every `outbox/*.edxml`; move each to `sent/` or `failed/`."""
        files = sorted(p for p in self.outbox.glob("*.edxml") if p.is_file() and not p.name.startswith("."))
        done: list[SentFile] = []
        for start in range(0, len(files), BATCH):
            chunk = files[start:start + BATCH]
            ready, refused = await asyncio.to_thread(self._read, chunk)
            done.extend(refused)
            if ready:
                ids = await self.client.submit_many([data for _, data, _ in ready],
                                                    priorities=[priority for *_, priority in ready])
                done.extend(await asyncio.to_thread(self._file_sent, ready, ids))
        return done

    def _read(self, chunk: list[Path]) -> tuple[list[tuple[Path, bytes, int]], list[SentFile]]:
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
            ready.append((path, data, summary.priority))
        return ready, refused

    def _fail(self, path: Path, reason: str) -> SentFile:
        target = self.failed / path.name
        write_atomic(self.failed / f"{path.stem}.reason.txt", (reason + "\n").encode())
        os.replace(path, target)
        fsync_directory(self.failed)
        fsync_directory(self.outbox)
        return SentFile(path, target, None, reason)

    def _file_sent(self, ready: list[tuple[Path, bytes, int]], ids: list[str]) -> list[SentFile]:
        moved = []
        for (path, _, _), submission in zip(ready, ids, strict=True):
            target = self.sent / f"{path.stem}.{submission}.edxml"
            os.replace(path, target)
            moved.append(SentFile(path, target, submission))
        if moved:
            fsync_directory(self.sent)
            fsync_directory(self.outbox)
        return moved

    async def run_once(self, *, wait: float = 1.0) -> Round:
        """Send the outbox, receive into `inbox/` (until nothing came for `wait` s), collect receipts."""
        result = Round()
        result.sent = await self.send_outbox()
        result.received = await self.client.pull(self.inbox, wait=wait)
        result.receipts = await self.client.collect_receipts(wait=min(wait, 0.5))
        return result

    async def run(self, stop: asyncio.Event, *, wait: float = 5.0) -> None:
        """`run_once` again and again until `stop` is set."""
        while not stop.is_set():
            await self.run_once(wait=wait)
