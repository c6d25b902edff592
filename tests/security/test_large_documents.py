"""A large document takes other roads than a small one: the gateway spools the upload to a file, the
signature is checked in pieces, a queued one waits in the store (`submission_bodies`), a delivery is served
a piece at a time. Each road must hold an agency to its own documents as the small one does.

Attacks, on both configurations, with a 12 MiB attachment (over `LARGE_TEXT`, and over the inline limit, set
to 1 MiB, on the queued road):
- H14 uploads G22's genuine signed packet with its own credential: refused with AX416, nothing stored or
  delivered, no spooled upload and no kept body left behind;
- H14 asks for H41's large delivery by its axis id: 404, as for an id that does not exist; without a
  credential: 401; neither moves the delivery, and H41 then takes it byte for byte.
"""
from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from adapters.edge import EdgeNotFound
from axis.refusals import RefusalCode
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H14, H41, TestPKI, document_id, large_document
from tests.security.support import as_agency, states, waiting

ATTACHMENT = 12 * 1024 * 1024


def _kept_bodies(deployment: Deployment) -> int:
    with deployment.store() as store, store.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM submission_bodies")).scalar_one())


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("road", ["gateway", "hub"])
def test_a_large_packet_of_another_agency_is_refused_and_leaves_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest, road: str) -> None:
    spool = Path(tempfile.mkdtemp(prefix="axis-spool-"))   # the gateway's TMPDIR: where uploads are spooled
    request.addfinalizer(lambda: shutil.rmtree(spool, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setenv("AXIS_INTAKE_AT", road)
    monkeypatch.setenv("AXIS_INLINE_BODY_BYTES", str(1024 * 1024))
    packet = tmp_path / "g22.edxml"
    large_document(e2e_pki, G22, [H41], 1, packet, attachment_bytes=ATTACHMENT)
    deployment.serve()

    answer = as_agency(deployment, H14, lambda edge: edge.submit(packet, wait=60))
    assert answer.outcome == "refused", answer
    assert answer.code == f"AX{RefusalCode.CALLER_NOT_SENDER.number}", answer
    assert waiting(deployment, H41) == []
    with deployment.store() as store:
        assert store.find_by_document_id(document_id(G22, 1)) == []
    assert _kept_bodies(deployment) == 0
    assert list(spool.glob("axis-upload-*")) == []


@pytest.mark.slow(seconds=15)
def test_a_large_delivery_is_served_to_its_recipient_only(deployment: Deployment, e2e_pki: TestPKI,
                                                            tmp_path: Path) -> None:
    packet = tmp_path / "g22.edxml"
    signed = large_document(e2e_pki, G22, [H41], 1, packet, attachment_bytes=ATTACHMENT)
    deployment.serve()
    answer = as_agency(deployment, G22, lambda edge: edge.submit(packet, wait=60))
    assert answer.outcome == "accepted", answer
    axis_id = answer.axis_id
    assert waiting(deployment, H41) == [axis_id]

    with pytest.raises(EdgeNotFound):
        as_agency(deployment, H14, lambda edge: edge.fetch_to(axis_id, tmp_path / "stolen.edxml"))
    with pytest.raises(EdgeNotFound):
        as_agency(deployment, G22, lambda edge: edge.fetch_to(axis_id, tmp_path / "stolen.edxml"))
    anonymous = asyncio.run(_status(f"{deployment.gateway_url}/v1/inbox/{axis_id}"))
    assert anonymous == 401
    assert states(deployment, axis_id) == {H41: "queued"}

    _, digest = as_agency(deployment, H41, lambda edge: edge.fetch_to(axis_id, tmp_path / "h41.edxml"))
    assert digest == signed
    assert hashlib.sha256((tmp_path / "h41.edxml").read_bytes()).hexdigest() == signed


async def _status(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).status_code
