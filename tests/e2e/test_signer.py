"""The axis key's keeper in the real commands.

- `axis serve` starts a signer process before its workers; killed (SIGKILL), it is started again on the
  same socket, the hub goes on, and documents sent meanwhile are accepted, each once, with seals their
  recipient's SDK checks.
- `axis signer serve` on its own: `axis serve --signer SOCKET` signs through it and starts none; the
  signer outlives the hub, and a SIGTERM ends it cleanly (its socket removed).
- A signer that cannot be had (nothing listens at --signer, no axis key, a socket folder open to others)
  stops the command in one line, with no traceback.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from axis.signer import SignerClient
from tests.e2e.harness import Deployment, HubProcess, wait_until
from tests.e2e.packets import G22, H41, TestPKI

STARTED = re.compile(r"signer (\S+) \(pid (\d+)\)")
RESTARTED = re.compile(r"the signer listens again on \S+ \(pid (\d+)\)")


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A folder with a short path (Unix socket paths are at most 107 bytes), 0700."""
    folder = Path(tempfile.mkdtemp(prefix="axis-t-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _send(deployment: Deployment, pki: TestPKI, folder: Path, numbers: range) -> None:
    for number in numbers:
        packet = folder / f"{number}.edxml"
        packet.write_bytes(pki.document(G22, [H41], number))
        sent = deployment.run("send", str(packet))
        assert sent.exit_code == 0 and "accepted" in sent.stdout, sent


@pytest.mark.slow(seconds=30)
def test_a_killed_signer_is_started_again_by_axis_serve_and_nothing_sent_meanwhile_is_lost(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment = embedded_deployment
    hub = deployment.serve()
    found = STARTED.search(hub.stderr())
    assert found, hub.stderr()
    socket, first = Path(found.group(1)), int(found.group(2))
    _send(deployment, e2e_pki, tmp_path, range(1, 2))

    os.kill(first, signal.SIGKILL)
    _send(deployment, e2e_pki, tmp_path, range(2, 5))  # right away: intake waits for the signer to be back

    again = wait_until(lambda: RESTARTED.search(hub.stderr()), "axis serve to start its signer again")
    assert int(again.group(1)) != first and hub.alive()
    assert SignerClient(socket).certificates()  # the same socket, the workers' and the gateway's
    inbox = tmp_path / "inbox"
    pulled = deployment.run("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(inbox))
    assert pulled.exit_code == 0, pulled  # the SDK checked each seal before storing
    assert len(list(inbox.glob("*.edxml"))) == 4, pulled


@pytest.mark.slow(seconds=25)
def test_axis_serve_signs_through_a_running_axis_signer_serve(embedded_deployment: Deployment, e2e_pki: TestPKI,
                                                              tmp_path: Path, short_folder: Path) -> None:
    deployment = embedded_deployment
    socket = short_folder / "signer.sock"
    signer = deployment.spawn("signer", "serve", "--socket", str(socket))
    wait_until(lambda: "axis signer listening on" in signer.stderr() or not signer.alive(), "the signer to listen")
    assert signer.alive(), signer.stderr()
    hub = HubProcess(deployment.options(["serve", "--workers", "1", "--signer", str(socket)]),
                     {**os.environ, **deployment.env()}, deployment.data / "logs")
    deployment.hubs.append(hub)
    hub.wait_serving(deployment)
    assert f"signer {socket} (AXIS_SIGNER)" in hub.stderr()
    _send(deployment, e2e_pki, tmp_path, range(1, 3))

    assert hub.stop() == 0
    assert SignerClient(socket).certificates()  # not the hub's: it outlives it
    signer.process.send_signal(signal.SIGTERM)
    assert signer.finish().exit_code == 0
    assert not socket.exists()


def test_a_signer_that_cannot_be_had_stops_the_command_in_one_line(embedded_deployment: Deployment,
                                                                   short_folder: Path) -> None:
    deployment = embedded_deployment
    nowhere = short_folder / "nobody-listens.sock"
    open_folder = short_folder / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    outcomes = {
        "serve --signer": (deployment.cli("serve", "--no-gateway", "--signer", str(nowhere)),
                           f"no signer answers at {nowhere}"),
        "gateway --signer": (deployment.cli("gateway", "--port", "0", "--signer", str(nowhere)),
                             f"no signer answers at {nowhere}"),
        "signer serve in an open folder": (deployment.cli("signer", "serve", "--socket", str(open_folder / "s.sock")),
                                           "is open to others"),
    }
    (deployment.data / "hub" / "AXIS.key.pem").unlink()
    outcomes["serve without the axis key"] = (deployment.cli("serve", "--no-gateway"), "axis key not found at")
    for name, (outcome, expected) in outcomes.items():
        assert outcome.exit_code == 1, (name, outcome)
        assert expected in outcome.stderr and "Traceback" not in outcome.stderr + outcome.stdout, (name, outcome)
        assert len(outcome.stderr.strip().splitlines()) == 1, (name, outcome.stderr)
