"""The signer process: the one keeper of the axis key on a machine, answering on a local Unix socket.

`run(config)` (blocking, until SIGTERM or SIGINT) loads the key and the
certificate file (leaf, then its chain) once to check them, listens on
`config.socket`, and starts `config.processes` signing processes that each
load the key once and then take connections from the one listening socket,
one at a time, each connection one request (`axis.signer.protocol`): a free
signing process takes the next caller, so concurrent callers are served by
as many processes at once (XML-DSig signing holds Python's interpreter lock:
threads would sign one receipt at a time, measured in docs/performance.md).
A signing process that dies is replaced; the signer's own process holds the
listening socket, so callers queue meanwhile instead of failing.

What callers and operators may rely on:
- only the signer's own user reaches it: the socket's folder must belong to
  that user with no access for others (created 0700 when missing; an
  existing one that others may enter is refused), the socket file is 0600,
  and every connection's peer uid (SO_PEERCRED) must be the signer's own,
  else it is answered `forbidden` and logged;
- a malformed request (not this protocol, a wrong field, too large, an input
  it cannot sign) gets an error answer, never a crash: the signing process
  goes on to the next caller; a caller that stalls mid-request is dropped
  after `REQUEST_TIMEOUT` seconds;
- a request's work is all or nothing: a batch answered `ok` is wholly signed;
- when the signer's process ends (SIGTERM, or SIGKILL of its parent with
  `die_with_parent`), its signing processes end with it, so nothing keeps
  answering with the key; an orderly end removes the socket file (and its
  folder, with `remove_folder`). A socket file left by a killed signer is
  replaced by the next one; a live signer's is never taken over.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from axis import wire
from axis.lifetime import die_with_parent
from axis.private import private_directory, restrict_umask
from axis.signer import protocol
from axis.signer.interface import AxisSigner, SignerRefused, SignerStartError
from axis.signer.local import LocalSigner

log = logging.getLogger("axis.signer")

REQUEST_TIMEOUT = 10.0          # seconds a connected caller has to send its whole request
MAX_SOCKET_PATH = 107           # bytes: sockaddr_un's sun_path, less its terminating NUL (Linux)
_PEER = struct.Struct("3i")     # struct ucred: pid, uid, gid
_QUICK_DEATH = 2.0              # seconds: a signing process that dies sooner after its start ...
_QUICK_DEATHS = 5               # ... this many times in a row stops the signer (it cannot work)
_DRAIN_BYTES = 1024 * 1024      # what a refused caller may still send before the signer hangs up on it
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class SignerConfig:
    """What a signer process needs (picklable: it crosses to spawned processes)."""

    key: Path
    cert: Path
    socket: Path
    processes: int = 1
    log: str = "INFO"
    remove_folder: bool = False     # the socket's folder was made for this signer: remove it at the end


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket, as the kernel saw it connect."""
    pid, uid, gid = _PEER.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER.size))
    return pid, uid, gid


def serve_connection(conn: socket.socket, signer: AxisSigner, allowed_uid: int) -> None:
    """Answer the one request on `conn` with `signer`, if its peer is `allowed_uid`. Never raises for
    anything the peer sends or does."""
    try:
        pid, uid, _ = peer_credentials(conn)
        if uid != allowed_uid:
            log.warning("refused a connection from uid %d (pid %d): this signer serves uid %d only", uid, pid,
                        allowed_uid)
            _refuse(conn, protocol.error("forbidden", f"this signer serves uid {allowed_uid} only, not {uid}"))
            return
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            request = protocol.parse_request(*protocol.read_frame(conn, protocol.MAX_REQUEST_BYTES))
        except protocol.FrameTooLarge as exc:
            _refuse(conn, protocol.error("too-large", str(exc)))
            return
        except protocol.ProtocolError as exc:
            _refuse(conn, protocol.error("malformed", str(exc)))
            return
        except (protocol.Closed, OSError):
            return  # the caller went away or stalled: nobody to answer
        _send(conn, _answer(signer, request))
    except OSError:
        pass  # the caller went away while being answered


def _answer(signer: AxisSigner, request: protocol.Request) -> bytes:
    try:
        if request.op == "sign_receipts" and not request.packets:
            return protocol.answer(signer.sign_receipts(request.blobs))
        if request.op in ("seal", "sign_receipts"):
            signed = signer.sign_receipts(request.blobs) if request.op == "sign_receipts" else []
            seals = signer.seal_many(request.packets)
            certificate = seals[0][wire.H_SEAL_CERT] if seals else ""
            return protocol.answer(signed, certificate=certificate,
                                   seals=[[s[wire.H_SEAL], s[wire.H_SEAL_TO]] for s in seals])
        if request.op == "sign_bytes":
            return protocol.answer([signer.sign_bytes(request.blobs[0])])
        return protocol.answer(signer.certificates())
    except SignerRefused as exc:
        return protocol.error("refused", str(exc))
    except Exception as exc:  # a bug answers this caller; the signer goes on serving the others
        log.exception("the signer failed on a %s request", request.op)
        return protocol.error("internal", f"{type(exc).__name__}: {exc}")


def _send(conn: socket.socket, frame: bytes) -> None:
    conn.settimeout(REQUEST_TIMEOUT)
    conn.sendall(frame)


def _refuse(conn: socket.socket, frame: bytes) -> None:
    """Answer with an error before the request was read whole: a socket closed with unread data resets the
    connection, and the caller would see the reset instead of the answer. So the rest is read and dropped,
    up to `_DRAIN_BYTES` or `_DRAIN_SECONDS`, whichever comes first."""
    _send(conn, frame)
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(_DRAIN_SECONDS)
    deadline, drained = time.monotonic() + _DRAIN_SECONDS, 0
    while drained < _DRAIN_BYTES and time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            return
        drained += len(chunk)


def listen(path: Path) -> socket.socket:
    """The signer's listening socket at `path` (see the module docstring for the folder and file modes);
    SignerStartError (one line) when it cannot be had."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SignerStartError(f"the signer's socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets "
                               f"take at most {MAX_SOCKET_PATH}: choose a shorter one")
    folder = path.parent
    try:
        private_directory(folder)
        info = folder.stat()
    except OSError as exc:
        raise SignerStartError(f"cannot make the signer's socket folder {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SignerStartError(f"{folder} is not a folder; choose another socket path")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SignerStartError(f"the signer's socket folder {folder} (mode {stat.S_IMODE(info.st_mode):o}, owner uid "
                               f"{info.st_uid}) is open to others; the signer listens only in a folder of its own "
                               f"user that nobody else may enter: `chmod 700 {folder}`, or choose another socket path")
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)  # the file is born 0600: there is no moment at which another user could connect
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SignerStartError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(mask)
    sock.set_inheritable(True)
    return sock


def _remove_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SignerStartError(f"{path} exists and is not a socket; remove it or choose another socket path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # left by a signer that was killed: nobody listens on it
            return
    raise SignerStartError(f"a signer already listens on {path}; use it (AXIS_SIGNER / --signer) or stop it first")


def _signing_process(config: SignerConfig, listener: socket.socket, parent: int) -> None:
    """One signing process: the key, then one connection after another until its parent ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the signer's process, which ends this one
    die_with_parent(parent)
    restrict_umask()
    from axis.logs import log_to_stderr

    log_to_stderr(config.log)
    signer = LocalSigner.from_files(config.key, config.cert)
    uid = os.geteuid()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:  # out of file descriptors, say: wait, rather than spin or die
            log.warning("the signer cannot accept a connection: %s", exc)
            time.sleep(0.5)
            continue
        with conn:
            serve_connection(conn, signer, uid)


def run(config: SignerConfig, *, ready: Callable[[], None] | None = None) -> None:
    """Run the signer (see the module docstring) until SIGTERM or SIGINT; `ready()` is called once it
    listens. SignerStartError (one line) when it cannot start or its signing processes cannot run."""
    restrict_umask()
    LocalSigner.from_files(config.key, config.cert)  # a key or certificate that cannot be used stops us here
    listener = listen(config.socket)
    listened = config.socket.stat().st_ino
    stop = threading.Event()
    # SIGINT too when it is ours to take (`axis signer serve`); a child of `axis serve` ignores it.
    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    context = multiprocessing.get_context("spawn")  # not forked: a fork would copy this process's threads

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        process = context.Process(target=_signing_process, args=(config, listener, os.getpid()),
                                  name="axis-signing", daemon=True)
        process.start()
        return process, time.monotonic()

    slots = [start() for _ in range(max(1, config.processes))]
    quick_deaths = 0
    try:
        if ready is not None:
            ready()
        while not stop.wait(0.2):
            for index, (process, since) in enumerate(slots):
                if process.is_alive():
                    continue
                quick_deaths = quick_deaths + 1 if time.monotonic() - since < _QUICK_DEATH else 0
                if quick_deaths >= _QUICK_DEATHS:
                    raise SignerStartError(f"the signer's signing processes end as they start (the last with exit "
                                           f"code {process.exitcode}); see the log above")
                log.warning("a signing process ended (exit code %s); starting another", process.exitcode)
                slots[index] = start()
    finally:
        for process, _ in slots:
            process.terminate()
        for process, _ in slots:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        listener.close()
        with contextlib.suppress(OSError):
            if config.socket.stat().st_ino == listened:  # ours, not a successor's
                config.socket.unlink()
                if config.remove_folder:
                    config.socket.parent.rmdir()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def child_main(config: SignerConfig, parent: int, report: multiprocessing.connection.Connection) -> None:
    """The signer as a spawned child of `axis serve` / `axis gateway` (`axis.signer.supervisor`): it dies
    with its parent, says on `report` when it listens (None) or why it cannot start (the message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops its signer
    die_with_parent(parent)
    from axis.logs import log_to_stderr

    log_to_stderr(config.log)
    try:
        run(config, ready=lambda: report.send(None))
    except SignerStartError as exc:
        with contextlib.suppress(OSError):
            report.send(str(exc))
        raise SystemExit(2) from None
