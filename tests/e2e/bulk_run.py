"""A long run for the fault tests: 2,000 documents sent with `axis send`, pulled with `axis inbox pull`.

`BulkRun.start()` writes the packets into an outbox folder and starts, as
processes, one `axis send` of the folder and one `axis inbox pull` per
recipient, all at once, so that a fault injected during the run hits intake,
relay, delivery and delivery receipts together. `drain()` pulls again until
the hub records every delivery as `delivered`; `check_exactly_once()` then
asserts the end state the design promises, from every side:

- each recipient's folder and inbox ledger hold every document exactly once,
  byte for byte as signed, under the axis id its sender's receipt names;
- each sender holds an intake receipt for each submission, accepted (a packet
  sent again is answered with its first receipt: outcome `duplicate`);
- the hub's store has one delivery per (document, recipient), all `delivered`,
  and `axis audit verify` passes.
"""
from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapters.inbox import InboxLedger
from axis.receipt import read_receipt
from tests.e2e.harness import STEP, Deployment, Outcome, Running, wait_until
from tests.e2e.packets import G17, G22, H14, H41, sha256

BULK = 2000
BULK_SENDERS = (G22, G17)       # half the documents each
BULK_RECIPIENTS = (H41, H14)    # every document goes to both
SEND_WAIT = 400.0     # `axis send --wait`: how long the sender waits for its intake receipts
PULL_IDLE = "10"      # `axis inbox pull --wait`: a pull ends after this many idle seconds (or at --max)


def delivery_states(deployment: Deployment) -> collections.Counter[str]:
    """How many deliveries are in each state: one GROUP BY, not 4,000 rows read (it is polled every 0.2 s
    while the hub, senders and pulls compete for the same two cores)."""
    with deployment.store() as store:
        return collections.Counter(store.delivery_counts())


def _while_storing(running: Running) -> float:
    """Wait for a pull as long as it keeps storing (its stdout, one line per stored document, grows); return
    what is left of the `STEP * 3` s it may then spend without storing anything (`finish` fails it after that).

    A bound on the whole pull (180 s from the moment the senders are done) failed pulls that were still storing
    several documents a second on a loaded two-core machine; a hung pull still fails after `STEP * 3` s."""
    size, since = -1, time.monotonic()
    while running.alive():
        now, current = time.monotonic(), running.out_path.stat().st_size
        if current != size:
            size, since = current, now
        elif now - since > STEP * 3:
            break
        time.sleep(0.5)
    return max(1.0, since + STEP * 3 - time.monotonic())


@dataclass
class BulkRun:
    deployment: Deployment
    packets: dict[str, bytes]          # file name -> signed bytes
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    root: Path
    sending: list[Running] = field(default_factory=list)
    pulls: list[Running] = field(default_factory=list)
    stored_lines: dict[str, list[str]] = field(default_factory=dict)
    sends: list[Outcome] = field(default_factory=list)
    # The deployments the agencies' commands go through, in turn (one per gateway); none: `deployment` alone.
    edges: tuple[Deployment, ...] = ()

    def _edge(self, index: int) -> Deployment:
        edges = self.edges or (self.deployment,)
        return edges[index % len(edges)]

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def inbox(self, code: str) -> Path:
        return self.root / "inbox" / code

    def start(self) -> None:
        self.outbox.mkdir(parents=True)
        for name, data in self.packets.items():
            (self.outbox / name).write_bytes(data)
        self.stored_lines = {code: [] for code in self.recipients}
        self.sending = self._send()
        self.pulls = [self._pull(code) for code in self.recipients]

    def _send(self) -> list[Running]:
        return self.send_folder(self.outbox, list(self.packets))

    def send_folder(self, folder: Path, names: list[str]) -> list[Running]:
        """`axis send` of `names` in `folder`; on the gateway road one per sender (a credential acts for one
        agency)."""
        if self.deployment.road != "gateway":
            return [self.deployment.spawn("send", str(folder), "--json", "--wait", str(SEND_WAIT))]
        files = {code: [folder / name for name in names if name.startswith(code.rsplit(".", 1)[1])]
                 for code in self.senders}
        return [self._edge(index).spawn("send", *map(str, paths), "--json", "--wait", str(SEND_WAIT))
                for index, paths in enumerate(files.values()) if paths]

    def _pull(self, code: str) -> Running:
        # --max: a pull that has taken all it still misses ends at once instead of idling.
        remaining = len(self.packets) - len(self.stored_lines[code])
        return self._edge(self.recipients.index(code)).spawn("inbox", "pull", code, *self.deployment.agency_files(code),
                                     "--out", str(self.inbox(code)), "--wait", PULL_IDLE,
                                     "--max", str(max(remaining, 1)))

    def finish_pulls(self, *, strict: bool = True) -> list[Outcome]:
        """Wait for the running pulls; `strict`: each must exit 0 (no delivery refused or left unreceipted).

        A pull that lived through a broker outage may exit 1 (a delivery receipt it
        could not publish is left to be delivered again); what it stored counts.
        """
        outcomes = []
        for code, running in zip(self.recipients, self.pulls, strict=True):
            outcome = running.finish(_while_storing(running))
            assert outcome.exit_code == 0 or not strict, outcome
            self.stored_lines[code] += outcome.lines()
            outcomes.append(outcome)
        self.pulls = []
        return outcomes

    def wait_until_delivered(self, count: int) -> collections.Counter[str]:
        """Until the hub has recorded `count` delivery receipts; the delivery states then."""
        return wait_until(lambda: (states := delivery_states(self.deployment))["delivered"] >= count and states,
                          f"{count} deliveries recorded as delivered", timeout=STEP * 2, interval=0.2)

    def finish_sending(self, timeout: float = SEND_WAIT + 60) -> Outcome:
        """Wait for the `axis send` processes; one outcome for all (the worst exit code, every JSON entry)."""
        assert self.sending
        outcomes = [running.finish(timeout) for running in self.sending]
        self.sending = []
        self.sends.extend(outcomes)
        report = [entry for outcome in outcomes if outcome.exit_code == 0 for entry in json.loads(outcome.stdout)]
        failed = [outcome for outcome in outcomes if outcome.exit_code != 0]
        if failed:
            return failed[0]
        return Outcome(outcomes[0].args, 0, json.dumps(report), "".join(o.stderr for o in outcomes))

    def send_again(self) -> Outcome:
        """Send the whole folder again (what an agency does after `axis send` could not confirm everything)."""
        self.sending = self._send()
        return self.finish_sending()

    def finish_after_outage(self) -> None:
        """End a run that lived through an outage and check its end state: a sender that lost its connection
        may end without some receipts (exit 1), so it sends everything again and must then hold an accepted
        (or duplicate: the first) receipt for every packet; pulls may exit 1 (a receipt left to deliver again)."""
        if self.finish_sending().exit_code != 0:
            again = self.send_again()
            assert again.exit_code == 0, again
        self.finish_pulls(strict=False)
        self.drain()
        self.check_exactly_once()

    def drain(self, timeout: float = 300.0) -> None:
        """Pull until the hub records every delivery as delivered (each round: all recipients side by side)."""
        expected = len(self.packets) * len(self.recipients)
        deadline = time.monotonic() + timeout
        while True:
            if self.pulls:
                self.finish_pulls()
            states = delivery_states(self.deployment)
            if states["delivered"] == expected:
                return
            assert time.monotonic() < deadline, f"not drained after {timeout:g} s: {dict(states)}"
            assert not set(states) - {"queued", "delivered"}, dict(states)
            with self.deployment.store() as store:
                waiting = any(store.inbox(code, limit=1) for code in self.recipients)
            if waiting:
                self.pulls = [self._pull(code) for code in self.recipients]
            else:
                time.sleep(0.5)  # submissions the hub has not decided yet

    def check_exactly_once(self) -> None:
        # The latest outcome of each file over the sends that completed (a run may send in waves, or again).
        report = list({entry["file"]: entry for send in self.sends if send.exit_code == 0
                       for entry in json.loads(send.stdout)}.values())
        assert len(report) == len(self.packets)
        by_file = {Path(entry["file"]).name: entry for entry in report}
        assert set(by_file) == set(self.packets)
        assert {entry["outcome"] for entry in report} <= {"accepted", "duplicate"}, \
            collections.Counter(entry["outcome"] for entry in report)
        axis_ids = {name: entry["axis_id"] for name, entry in by_file.items()}
        assert len(set(axis_ids.values())) == len(self.packets)
        expected_bytes = {axis_ids[name]: data for name, data in self.packets.items()}

        # Every sender holds an intake receipt for each of its submissions, naming the axis id.
        for entry in report:
            path = (self.deployment.data / "agencies" / entry["sender"] / "receipts"
                    / f"intake_{entry['submission']}.xml")
            receipt = read_receipt(path.read_bytes())
            assert (receipt.kind, receipt.outcome, receipt.axis_id) == ("intake", "accepted", entry["axis_id"])
        assert {entry["sender"] for entry in report} == set(self.senders)

        for code in self.recipients:
            folder = self.inbox(code)
            files = {path.stem: path for path in folder.glob("*.edxml")}
            assert sorted(files) == sorted(expected_bytes), f"{code}: {len(files)} files"
            for axis_id, path in files.items():
                assert path.read_bytes() == expected_bytes[axis_id], f"{code}: {path} differs from what was sent"
            assert list(folder.glob(".*")) == []  # no temporary file left behind
            # Each stored once: one ledger row each, announced on stdout exactly once over all pulls
            # (a redelivery of a stored packet is reported on stderr, as "already stored").
            printed = [Path(line.split()[0]).stem for line in self.stored_lines[code]]
            assert sorted(printed) == sorted(expected_bytes), f"{code}: {len(printed)} stores printed"
            ledger = InboxLedger(self.deployment.data / "agencies" / code / "inbox.db")
            try:
                entries = ledger.entries()
            finally:
                ledger.close()
            assert sorted(e.axis_id for e in entries) == sorted(expected_bytes)
            assert all(e.digest == sha256(expected_bytes[e.axis_id]) for e in entries)

        with self.deployment.store() as store:
            deliveries = store.list_deliveries(limit=1_000_000)
        assert collections.Counter((d.axis_id, d.recipient_code) for d in deliveries) == collections.Counter(
            {(axis_id, code): 1 for axis_id in expected_bytes for code in self.recipients})
        assert {d.state for d in deliveries} == {"delivered"}

        audit = self.deployment.cli("audit", "verify")
        assert audit.exit_code == 0 and "audit log verified" in audit.stdout, audit
