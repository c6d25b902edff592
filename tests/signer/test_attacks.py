"""Attacks on the axis key's keeper: real signer processes, real sockets, real worker processes.

- A hub worker process (which parses hostile XML) holds no trace of the axis key in its memory after
  it has signed through the signer, while the signer's signing process does (the scan's control);
  nothing the workers are given names the key's file.
- Only the signer's user reaches it: the socket is 0600 in a 0700 folder, a folder open to others is
  refused, and a peer of another uid is answered `forbidden` (SO_PEERCRED), at unit level and, when
  the tests run as root, from a real process of the user nobody.
- Malformed, oversized and unsignable requests get an error answer; the same signing processes go on.
- A killed signer makes callers fail at once with SignerUnavailable, takes its signing processes with
  it, and is started again by its owner's watch; a killed signing process is replaced.
- A batch that could not be signed is not committed; once the signer is back, it is.
"""
from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest

from axis import wire
from axis.hub import TrustSettings
from axis.hub.intake import Submission
from axis.hub.workers import WorkerPool
from axis.signer import LocalSigner, SignerChild, SignerClient, SignerStartError, SignerUnavailable, protocol
from axis.signer.service import listen, serve_connection
from axis.trust import keys
from tests.hub.conftest import pki_dir, running_world  # noqa: F401 - fixture reused
from tests.signer.conftest import AxisKey

G22, H41 = "000.00.00.G22", "000.00.00.H41"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _signing_processes(child: SignerChild) -> list[int]:
    assert child.pid is not None
    return sorted(pid for pid in _children(child.pid) if "resource_tracker" not in _cmdline(pid))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def _memory_holds(pid: int, needles: dict[str, bytes]) -> set[str]:
    """Which of `needles` occur anywhere in the readable memory of process `pid`."""
    found: set[str] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            parts = line.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            try:
                memory.seek(start)
                chunk = memory.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(name for name, needle in needles.items() if needle in chunk)
    return found


def _raw_call(path: Path, frame: bytes, *, close_after_send: bool = False) -> dict | None:
    """Send raw bytes to the signer; the header of its answer (None: it closed without one)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(frame)
        if close_after_send:
            return None
        try:
            header, _ = protocol.read_frame(sock, protocol.MAX_ANSWER_BYTES)
        except protocol.Closed:
            return None
        return header


# ------------------------------------------------------------------ the key is not in the workers

@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="reads another process's memory through /proc")
async def test_a_hub_worker_process_holds_no_trace_of_the_axis_key(tmp_path: Path, pki_dir: Path) -> None:  # noqa: F811
    key_path = pki_dir / "keys" / "AXIS.key.pem"
    key = keys.load_private_key(key_path)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    needles = {"private scalar (big-endian)": scalar, "private scalar (little-endian, as OpenSSL holds it)":
               scalar[::-1], "a line of the key file": key_path.read_bytes().splitlines()[1]}

    async with running_world(tmp_path, pki_dir, workers=1, intake_at="hub") as world:
        [worker] = await world.hub.pool.start()
        submission = await world.submit(world.document(G22, [H41]), G22)
        outcome, _receipt, signed_by = await world.outcome(submission)
        assert outcome.outcome == "accepted" and signed_by == wire.HUB_IDENTITY  # the worker had it signed

        # Nothing the worker processes were given names the key's file.
        assert not any("key" in f.name or "cert" in f.name for f in fields(TrustSettings))
        given = pickle.dumps(world.hub.pool._executor._initargs)  # type: ignore[attr-defined]
        assert str(key_path).encode() not in given and b"AXIS.key.pem" not in given
        assert str(key_path) not in _cmdline(worker)

        assert _memory_holds(worker, needles) == set()
        assert world.signer_process is not None
        [signing] = _signing_processes(world.signer_process)
        assert _memory_holds(signing, needles), "the scan found the key in no process: it proves nothing"


def test_worker_processes_refuse_an_in_process_signer(axis_keys: dict[str, AxisKey], tmp_path: Path) -> None:
    trust = TrustSettings(trust_roots=axis_keys["ec"].ca, crl=None)
    with pytest.raises(TypeError, match="SignerClient"):
        WorkerPool(trust, 1, signer=LocalSigner.from_files(axis_keys["ec"].key, axis_keys["ec"].cert))


# ------------------------------------------------------------------ only the signer's user reaches it

def test_the_socket_is_0600_in_a_0700_folder_of_the_signers_user(ec_signer: SignerChild) -> None:
    for path, mode in ((ec_signer.socket, 0o600), (ec_signer.socket.parent, 0o700)):
        info = path.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (mode, os.geteuid()), path


def test_a_peer_of_another_uid_is_refused_by_its_peer_credentials(axis_keys: dict[str, AxisKey]) -> None:
    """serve_connection reads the peer's uid with SO_PEERCRED; any uid but the one it serves is refused."""
    signer = LocalSigner.from_files(axis_keys["ec"].key, axis_keys["ec"].cert)
    answers = []
    for allowed in (os.geteuid() + 1, os.geteuid()):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            serving = threading.Thread(target=serve_connection, args=(ours, signer, allowed))
            serving.start()
            theirs.sendall(protocol.request("certificates"))
            header, blobs = protocol.read_frame(theirs, protocol.MAX_ANSWER_BYTES)
            serving.join(10)
            answers.append((header.get("ok"), header.get("error"), len(blobs)))
    assert answers == [(False, "forbidden", 0), (True, None, 1)]


_AS_ANOTHER_USER = r"""
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print("cannot connect", exc.errno)
    raise SystemExit(0)
head = json.dumps({"op": "certificates", "v": 1, "sizes": []}).encode()
sock.sendall(struct.pack(">II", len(head), len(head)) + head)
data = b""
while chunk := sock.recv(65536):
    data += chunk
total, length = struct.unpack(">II", data[:8])
print("answered", json.loads(data[8:8 + length]).get("error"))
"""


def _python_for_nobody() -> str | None:
    """A Python interpreter the user nobody may run (the tests' own may live in root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        try:
            if subprocess.run([candidate, "-I", "-S", "-c", "pass"], user=65534, group=65534, extra_groups=[],
                              cwd="/", capture_output=True, timeout=60).returncode == 0:
                return candidate
        except OSError:
            continue
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_a_process_of_another_user_cannot_use_the_signer(fresh_signer: SignerChild) -> None:
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter the user nobody may run")

    def as_nobody() -> str:
        result = subprocess.run([python, "-I", "-S", "-c", _AS_ANOTHER_USER, str(fresh_signer.socket)], user=65534,
                                group=65534, extra_groups=[], cwd="/", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert as_nobody() == "cannot connect 13"  # EACCES: the folder is 0700
    # An operator opens the folder and the socket to everyone: the peer's uid still keeps nobody out.
    fresh_signer.socket.parent.chmod(0o711)
    fresh_signer.socket.chmod(0o666)
    assert as_nobody() == "answered forbidden"
    assert SignerClient(fresh_signer.socket).certificates()  # and its own user is still served


def test_a_socket_folder_open_to_others_is_refused(axis_keys: dict[str, AxisKey]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="axis-t-"))
    try:
        folder.chmod(0o755)
        with pytest.raises(SignerStartError, match=r"open to others.*chmod 700"):
            listen(folder / "signer.sock")
        # The same reason reaches whoever starts the signer as a child.
        child = SignerChild(axis_keys["ec"].key, axis_keys["ec"].cert, socket=folder / "signer.sock")
        with pytest.raises(SignerStartError, match="open to others"):
            child.start()
        assert not child.alive()
    finally:
        shutil.rmtree(folder)


def test_the_socket_path_is_never_taken_from_a_live_signer_or_a_file(ec_signer: SignerChild) -> None:
    with pytest.raises(SignerStartError, match="already listens"):
        listen(ec_signer.socket)
    folder = Path(tempfile.mkdtemp(prefix="axis-t-"))
    try:
        (folder / "not-a-socket").write_text("data")
        with pytest.raises(SignerStartError, match="not a socket"):
            listen(folder / "not-a-socket")
        assert (folder / "not-a-socket").read_text() == "data"
        with pytest.raises(SignerStartError, match="at most 107"):
            listen(folder / ("x" * 120))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(folder / "stale.sock"))
        stale.close()  # what a killed signer leaves: a socket file nobody listens on
        listen(folder / "stale.sock").close()
    finally:
        shutil.rmtree(folder)


def test_a_signer_that_cannot_load_its_key_says_why(axis_keys: dict[str, AxisKey], tmp_path: Path) -> None:
    child = SignerChild(tmp_path / "missing.key.pem", axis_keys["ec"].cert)
    with pytest.raises(SignerStartError, match=r"missing\.key\.pem.*cannot read"):
        child.start()
    child.stop()


# ------------------------------------------------------------------ hostile requests

def _frame(head: bytes, blobs: bytes = b"", *, total: int | None = None, length: int | None = None) -> bytes:
    return struct.pack(">II", len(head) + len(blobs) if total is None else total,
                       len(head) if length is None else length) + head + blobs


def _json(**header: object) -> bytes:
    return json.dumps(header).encode()


_ENTITY = (b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaa">]><axr:Receipt xmlns:axr="urn:axis:receipt:1">'
           b'&a;&a;&a;</axr:Receipt>')
HOSTILE = {
    "an HTTP request": (b"GET / HTTP/1.1\r\nHost: signer\r\n\r\n", "too-large"),
    "a frame of 1 GiB announced": (struct.pack(">II", 1 << 30, 10), "too-large"),
    "a header longer than its frame": (_frame(b"{}", total=2, length=50), "malformed"),
    "a header that is not JSON": (_frame(b"\xff\xfe{op"), "malformed"),
    "a header that is a JSON list": (_frame(b"[1, 2]"), "malformed"),
    "another version": (_frame(_json(v=2, op="certificates", sizes=[])), "malformed"),
    "an unknown op": (_frame(_json(v=1, op="export_key", sizes=[])), "malformed"),
    "sizes that do not add up": (_frame(_json(v=1, op="sign_bytes", sizes=[10]), b"abc"), "malformed"),
    "a negative size": (_frame(_json(v=1, op="sign_bytes", sizes=[-1, 4]), b"abc"), "malformed"),
    "sign_bytes with two blobs": (_frame(_json(v=1, op="sign_bytes", sizes=[1, 1]), b"ab"), "malformed"),
    "a seal without packets": (_frame(_json(v=1, op="seal", sizes=[])), "malformed"),
    "a seal of the wrong shape": (_frame(_json(v=1, op="seal", sizes=[], packets=[["AX", "H41", 3]])), "malformed"),
    "a receipt that is not XML": (_frame(_json(v=1, op="sign_receipts", sizes=[9]), b"not <xml>"), "refused"),
    "a receipt with an entity": (_frame(_json(v=1, op="sign_receipts", sizes=[len(_ENTITY)]), _ENTITY), "refused"),
}


def test_hostile_requests_get_an_error_answer_and_the_same_signing_processes_go_on(ec_signer: SignerChild) -> None:
    before = _signing_processes(ec_signer)
    client = SignerClient(ec_signer.socket, timeout=20)
    answers = {}
    for name, (frame, _) in HOSTILE.items():
        header = _raw_call(ec_signer.socket, frame)
        answers[name] = header.get("error") if header is not None else None
        assert client.certificates()  # served right after each
    assert answers == {name: kind for name, (_, kind) in HOSTILE.items()}
    # A caller that sends half a request and leaves gets nothing, and hurts nothing.
    assert _raw_call(ec_signer.socket, protocol.request("certificates")[:5], close_after_send=True) is None
    assert client.sign_bytes(b"still here")
    assert _signing_processes(ec_signer) == before


# ------------------------------------------------------------------ a signer that dies

async def test_a_killed_signer_fails_its_callers_at_once_and_is_started_again(fresh_signer: SignerChild) -> None:
    client = SignerClient(fresh_signer.socket, timeout=30)
    assert client.certificates()
    first, signing = fresh_signer.pid, _signing_processes(fresh_signer)
    assert first is not None and len(signing) == 2
    os.kill(first, signal.SIGKILL)
    fresh_signer.process.join(10)  # type: ignore[union-attr]

    start = time.monotonic()
    with pytest.raises(SignerUnavailable):  # refused, or reset by a signing process as it ends
        client.certificates()
    assert time.monotonic() - start < 1.0
    # Its signing processes end with it: nothing answers with the key any more.
    _wait(lambda: not any(_alive(pid) for pid in signing), "the signing processes to end with their signer", 10)
    with pytest.raises(SignerUnavailable, match="no signer answers"):
        client.certificates()

    watching = asyncio.create_task(fresh_signer.watch(interval=0.1))
    try:
        deadline = time.monotonic() + 30
        while not (fresh_signer.alive() and fresh_signer.pid != first):
            assert time.monotonic() < deadline and not watching.done(), "the signer was not started again"
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(client.certificates)
    finally:
        watching.cancel()


def test_a_killed_signing_process_is_replaced(fresh_signer: SignerChild) -> None:
    client = SignerClient(fresh_signer.socket, timeout=30)
    victim, other = _signing_processes(fresh_signer)
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: len(_signing_processes(fresh_signer)) == 2 and victim not in _signing_processes(fresh_signer),
          "a new signing process")
    assert other in _signing_processes(fresh_signer)
    for _ in range(4):
        assert client.sign_bytes(b"after the replacement")


async def test_a_batch_that_cannot_be_signed_is_not_committed_until_the_signer_is_back(
        tmp_path: Path, pki_dir: Path) -> None:  # noqa: F811
    folder = Path(tempfile.mkdtemp(prefix="axis-t-"))
    signer = SignerChild(pki_dir / "keys" / "AXIS.key.pem", pki_dir / "keys" / "AXIS.cert.pem",
                         socket=folder / "signer.sock")
    async with running_world(tmp_path, pki_dir, intake_at="hub") as world:
        pool = WorkerPool(world.hub.settings.trust, 0, signer=SignerClient(signer.socket, timeout=5),
                          store_url=world.store.engine.url.render_as_string(hide_password=False))
        batch = [Submission(wire.new_submission_id(), world.document(G22, [H41]), caller=G22, credential="c")]
        try:
            with pytest.raises(SignerUnavailable):
                await pool.intake(batch)
            assert world.store.submissions([batch[0].submission_id]) == {}
            assert world.store.list_deliveries(limit=10) == []

            await asyncio.to_thread(signer.start)
            [outcome] = await pool.intake(batch)
            assert outcome.outcome == "accepted"
            assert world.store.submissions([batch[0].submission_id])[batch[0].submission_id].outcome == "accepted"
        finally:
            pool.close()
            signer.stop()
            shutil.rmtree(folder, ignore_errors=True)
