"""One real story per database, told once per module: a document from G22 to H41 and H14 through the real hub and
gateway service (intake, deliveries, delivery receipts, statuses 01 and 03 and a refused one), a checkpoint signed
with Axis's key and stamped by a real `axis tsa serve`, then `axis evidence` (the CLI) writing the bundle.

The PKI is the module's own (tests revoke in copies of it), and so is the database: SQLite, and PostgreSQL (a copy
of the migrated template) under the `postgres` marker.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis import wire
from axis.audit.checkpoints import CheckpointWriter
from axis.edxml import Organization, packet_to_bytes
from axis.edxml.compose import new_status
from axis.edxml.model import ResponseFor
from axis.receipt import Receipt, build_receipt, now_utc
from axis.timestamp import request_timestamp
from cli.main import app
from tests.audit.conftest import key_signer
from tests.hub.conftest import AGENCIES, UNREGISTERED, World, running_world, sha256
from tests.store.conftest import _fresh_pg_database, _pg_url, pg_template  # noqa: F401 - fixture reused
from tests.tsa_support import ServedTSA

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


def axis(home: Path, *args: object) -> Result:
    """The `axis` command in process, with a data directory of its own (no setting leaks in)."""
    return CliRunner().invoke(app, [str(a) for a in args],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "AXIS_DATA": str(home / "axis-data")})


@dataclass(frozen=True)
class Story:
    home: Path
    db: str
    pki: Path                 # ca/ (ca.pem, ca.key.pem, crl.pem) and keys/ (<code>.key.pem, .cert.pem)
    tsa_root: Path
    axis_id: str              # the document
    answers: list[str]        # the axis ids of its status packets accepted before checkpoint 1
    bundle: Path              # `axis evidence AXIS_ID --out …`, complete (checkpoint 1)
    incomplete: Path          # `… --uncovered`, after H14's late status 03
    not_covered: Result       # `axis evidence AXIS_ID` then, without --uncovered

    @property
    def root(self) -> Path:
        return self.pki / "ca" / "ca.pem"

    def files(self, bundle: Path | None = None) -> dict[str, bytes]:
        with zipfile.ZipFile(bundle or self.bundle) as archive:
            return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes], path: Path, *, manifest: bool = True) -> Path:
    """Write `files` as a bundle; `manifest`: recompute MANIFEST.sha256 as an attacker who edits files would."""
    if manifest:
        files = {**files, "MANIFEST.sha256": "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
            if name != "MANIFEST.sha256").encode()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


def _pki(root: Path) -> Path:
    from axis.trust import pki
    pki.init_ca(root / "ca")
    for code in [*AGENCIES, UNREGISTERED, wire.HUB_IDENTITY]:
        pki.issue(code, root / "ca", root / "keys")
    return root


async def _tell(world: World) -> tuple[str, list[str]]:
    """The story; (the document's axis id, its answers' axis ids)."""
    async def sent(body: bytes, sender: str) -> str:
        outcome, _, _ = await world.outcome(await world.service.submit(world.caller(sender), body))
        return outcome.outcome if outcome.outcome != "accepted" else str(outcome.axis_id)

    axis_id = await sent(world.document(G22, [H41, H14]), G22)
    [delivery] = await world.inbox(H41, 1)
    await world.inbox(H14, 1)
    answered = ResponseFor(organ_id=G22, document_id=world.store.get_document(axis_id).document_id)

    def status(sender: str, code: str) -> bytes:
        return world.signers[sender].sign(packet_to_bytes(new_status(Organization(sender), answered, code)))

    # H14 answers before it said it stored the document: refused, an error receipt on the document's timeline.
    assert await sent(status(H14, "06"), H14) == "refused"
    receipt = world.signers[H41].sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=axis_id, sender=G22,
        recipient=H41, digest=sha256(delivery.body))))
    await world.service.ack(world.caller(H41), axis_id, receipt)      # its own signed receipt
    await world.service.ack(world.caller(H14), axis_id, None)         # Axis signs one for it
    answers = []
    for sender, code in ((H41, "01"), (H41, "03"), (H14, "01")):
        answers.append(await sent(status(sender, code), sender))
        [back] = await world.inbox(G22, 1)
        await world.service.ack(world.caller(G22), back.axis_id, None)
    return axis_id, answers


@contextlib.contextmanager
def _database(backend: str, home: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{home / 'axis.db'}"
        return
    with _fresh_pg_database(request.getfixturevalue("pg_template")) as name:
        yield _pg_url(name)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def story(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tsa: ServedTSA) -> Iterator[Story]:
    """The story, checkpoint 1 (stamped), `axis evidence` → `bundle`; then H14 accepts (status 03), which no
    checkpoint covers: `axis evidence` refuses (`not_covered`), `--uncovered` writes `incomplete`; then checkpoint
    2 covers it all again (so a test may build a complete bundle of its own)."""
    home = tmp_path_factory.mktemp(f"evidence-{request.param}")
    pki_dir = _pki(home / "pki")
    keys = pki_dir / "keys"
    crl = pki_dir / "ca" / "crl.pem"
    with _database(request.param, home, request) as db:
        async def run() -> Story:
            # The hub's own checkpoint writer stays quiet: the story places its checkpoints itself.
            async with running_world(home / "world", pki_dir, store_url=db, checkpoint_entries=10**9,
                                     checkpoint_seconds=10.0**9) as world:
                axis_id, answers = await _tell(world)
                writer = CheckpointWriter(world.store, key_signer(keys / "AXIS.key.pem", keys / "AXIS.cert.pem"),
                                          stamp=lambda data: request_timestamp(tsa.url, data, timeout=10),
                                          tsa=tsa.url)
                assert writer.write() is not None and writer.stamp_pending() == 1
                built = await asyncio.to_thread(axis, home, "evidence", axis_id, "--out", home / "bundle.zip",
                                                "--db", db, "--crl", crl)
                assert built.exit_code == 0, built.output
                document_id = world.store.get_document(axis_id).document_id
                late = world.signers[H14].sign(packet_to_bytes(new_status(
                    Organization(H14), ResponseFor(organ_id=G22, document_id=document_id), "03")))
                outcome, _, _ = await world.outcome(await world.service.submit(world.caller(H14), late))
                assert outcome.outcome == "accepted"
                refused = await asyncio.to_thread(axis, home, "evidence", axis_id, "--out", home / "refused.zip",
                                                  "--db", db, "--crl", crl)
                partial = await asyncio.to_thread(axis, home, "evidence", axis_id, "--uncovered", "--out",
                                                  home / "incomplete.zip", "--db", db, "--crl", crl)
                assert partial.exit_code == 0, partial.output
                assert writer.write() is not None and writer.stamp_pending() == 1
                return Story(home, db, pki_dir, tsa.root, axis_id, answers, home / "bundle.zip",
                             home / "incomplete.zip", refused)

        (home / "world").mkdir()
        yield asyncio.run(run())


@pytest.fixture
def ca_copy(story: Story, tmp_path: Path) -> Path:
    """A copy of the story's CA directory, to revoke in without touching the story's."""
    return Path(shutil.copytree(story.pki / "ca", tmp_path / "ca"))
