"""A new operator's everyday mistakes end in at most three lines naming the file and what is wrong, a non-zero
exit and never a traceback (issue 11): a TABLE of mistakes — a missing file, a folder where a file belongs, an
unreadable file, a file of the wrong kind (garbage, a key where a certificate belongs and the reverse), a key
that is not its certificate's, a file to write under something that is not a folder — run against EVERY file
parameter of EVERY command. The parameters are read from the typer app itself: a command with a new file
parameter fails `test_every_file_parameter_is_in_the_table` until it is listed in PARAMETERS below."""
from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer._click import Context  # typer's own click: the one its commands are built on
from typer.main import get_command
from typer.testing import CliRunner, Result

from cli.main import app

G22, H41 = "000.00.00.G22", "000.00.00.H41"
CLOSED = "http://127.0.0.1:9"  # nothing listens there: a gateway command must fail on its files before it tries
CLOSED_AMQP = "amqp://guest:guest@127.0.0.1:9/"  # nor a broker
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False

# What each file parameter of each command is, which decides the mistakes tried on it:
#   key, cert, crl (PEM of that kind), file (any other file read), any (a file read that may be empty),
#   dir (a folder read), out (a file written),
#   outdir (a folder written into), socket (a Unix socket to listen on or talk to).
PARAMETERS: dict[str, dict[str, str]] = {
    "adapter folder": {"root": "outdir", "key": "key", "cert": "cert", "credential": "file", "gateway_ca": "cert",
                       "trust": "cert", "crl": "crl"},
    "agency add": {"cert": "cert"},
    "agency import": {"catalogue": "file"},
    "audit checkpoint": {"out": "out"},
    "backup": {"directory": "outdir"},
    "cert add": {"cert": "cert", "trust": "cert", "crl": "crl"},
    "cert list": {"crl": "crl"},
    "doctor": {"calendar": "any"},
    "key rotate": {"key": "key", "cert": "cert", "pki_dir": "dir", "trust": "cert", "crl": "crl"},
    "audit export": {"directory": "outdir"},
    "audit verify": {"against": "file", "trust": "cert", "tsa_trust": "cert", "export": "dir"},
    "demo": {"workdir": "outdir"},
    "evidence get": {"out": "out", "crl": "crl"},
    "evidence verify": {"bundle": "file", "trust": "cert", "tsa_trust": "cert"},
    "gateway": {"tls_cert": "cert", "tls_key": "key", "trust": "cert", "crl": "crl", "key": "key", "cert": "cert",
                "signer": "socket"},
    "inbox pull": {"key": "key", "cert": "cert", "out": "outdir", "credential": "file", "gateway_ca": "cert",
                   "trust": "cert", "crl": "crl", "state": "outdir"},
    "overdue": {"calendar": "any"},
    "packet new": {"attach": "any", "out": "out"},
    "packet show": {"packet": "file"},
    "packet sign": {"packet": "file", "key": "key", "cert": "cert", "out": "out"},
    "packet validate": {"packet": "file"},
    "packet verify": {"packet": "file", "trust": "cert", "crl": "crl"},
    "pki crl": {"pki_dir": "dir"},
    "pki init": {"directory": "outdir"},
    "pki issue": {"pki_dir": "dir", "out": "outdir"},
    "pki revoke": {"cert": "cert", "pki_dir": "dir"},
    "pki tls": {"pki_dir": "dir", "out": "outdir"},
    "send": {"packets": "file", "credential": "file", "gateway_ca": "cert", "state": "outdir", "trust": "cert",
             "crl": "crl"},
    "serve": {"trust": "cert", "crl": "crl", "key": "key", "cert": "cert", "signer": "socket", "tls_cert": "cert",
              "tls_key": "key"},
    "signer serve": {"socket": "socket", "key": "key", "cert": "cert"},
    "status send": {"key": "key", "cert": "cert", "inbox": "dir", "credential": "file", "gateway_ca": "cert",
                    "trust": "cert", "crl": "crl", "state": "outdir"},
    "tsa init": {"directory": "outdir"},
    "tsa serve": {"key": "key", "cert": "cert"},
}

# A valid invocation of each command, every file parameter a {placeholder}; a mistake replaces one of them. Where
# two parameters exclude each other (a signer socket makes the key unused), a list: a parameter's mistakes run in
# the first invocation that names it.
COMMANDS: dict[str, str | list[str]] = {
    "adapter folder": "adapter folder --agency G22 --root {root} --key {key} --cert {cert} --gateway " + CLOSED
                      + " --credential-file {credential} --gateway-ca {gateway_ca} --trust {trust} --crl {crl} --once "
                        "--wait 0",
    "agency add": "agency add 000.00.00.G17 --name x --cert {cert}",
    "agency import": "agency import {catalogue}",
    "audit checkpoint": "audit checkpoint --out {out}",
    "backup": "backup {directory}",
    "cert add": "cert add 000.00.00.G22 {cert} --trust {trust} --crl {crl}",
    "cert list": "cert list --crl {crl}",
    "doctor": "doctor --gateway none --broker " + CLOSED_AMQP + " --calendar {calendar}",
    "key rotate": ["key rotate --key {key} --cert {cert}", "key rotate --pki {pki_dir} --trust {trust} --crl {crl}"],
    "audit export": "audit export {directory}",
    "audit verify": ["audit verify --against {against} --trust {trust} --tsa-trust {tsa_trust}",
                     "audit verify --export {export}"],
    "demo": "demo --dir {workdir}",
    "evidence get": "evidence get AXIS_ID --out {out} --crl {crl}",
    "evidence verify": "evidence verify {bundle} --trust {trust} --tsa-trust {tsa_trust}",
    "gateway": ["gateway --port 0 --tls-cert {tls_cert} --tls-key {tls_key} --trust {trust} --crl {crl} --key {key} "
                "--cert {cert}", "gateway --port 0 --signer {signer}"],
    "inbox pull": "inbox pull H41 --key {key} --cert {cert} --out {out} --gateway " + CLOSED
                  + " --credential-file {credential} --gateway-ca {gateway_ca} --trust {trust} --crl {crl} "
                    "--state {state} --wait 0",
    "overdue": "overdue --calendar {calendar}",
    "packet new": "packet new --from G22 --to H41 --subject x --attach {attach} -o {out}",
    "packet show": "packet show {packet}",
    "packet sign": "packet sign {packet} --key {key} --cert {cert} -o {out}",
    "packet validate": "packet validate {packet}",
    "packet verify": "packet verify {packet} --trust {trust} --crl {crl}",
    "pki crl": "pki crl {pki_dir}",
    "pki init": "pki init {directory}",
    "pki issue": "pki issue 000.00.00.G17 --pki {pki_dir} --out {out}",
    "pki revoke": "pki revoke {cert} --pki {pki_dir}",
    "pki tls": "pki tls localhost --pki {pki_dir} --out {out}",
    "send": "send {packets} --gateway " + CLOSED + " --credential-file {credential} --gateway-ca {gateway_ca} "
            "--state {state} --trust {trust} --crl {crl} --wait 0",
    "serve": ["serve --workers 1 --gateway-port 0 --trust {trust} --crl {crl} --key {key} --cert {cert} "
              "--tls-cert {tls_cert} --tls-key {tls_key}", "serve --workers 1 --gateway-port 0 --signer {signer}"],
    "signer serve": "signer serve --socket {socket} --key {key} --cert {cert}",
    "status send": "status send DOC --from H41 --code 01 --key {key} --cert {cert} --inbox {inbox} --gateway "
                   + CLOSED + " --credential-file {credential} --gateway-ca {gateway_ca} --trust {trust} --crl {crl} "
                              "--state {state} --wait 0",
    "tsa init": "tsa init {directory}",
    "tsa serve": "tsa serve --port 0 --key {key} --cert {cert}",
}


def _commands() -> Iterator[tuple[str, typing.Any]]:
    def walk(command: typing.Any, path: list[str]) -> Iterator[tuple[str, typing.Any]]:
        if hasattr(command, "list_commands"):  # a group: `axis` loads its commands as they are asked for
            context = Context(command)
            for name in sorted(command.list_commands(context)):
                yield from walk(command.get_command(context, name), [*path, name])
        else:
            yield " ".join(path), command
    yield from walk(get_command(app), [])


def file_parameters() -> dict[str, set[str]]:
    """{command: names of its parameters that take a Path (or a list of them)}, from the app itself."""
    found: dict[str, set[str]] = {}
    for name, command in _commands():
        hints = typing.get_type_hints(command.callback)
        paths = {p for p in inspect.signature(command.callback).parameters
                 if Path in (typing.get_args(hints[p]) or (hints[p],))
                 or any(Path in typing.get_args(a) for a in typing.get_args(hints[p]))}
        if paths:
            found[name] = paths
    return found


def test_every_file_parameter_is_in_the_table() -> None:
    listed = {command: set(kinds) for command, kinds in PARAMETERS.items()}
    assert file_parameters() == listed, "list each command's file parameters in PARAMETERS (and COMMANDS)"
    assert set(COMMANDS) == set(PARAMETERS)
    for command, kinds in PARAMETERS.items():
        assert all(_template(command, name) for name in kinds), command


def _template(command: str, name: str) -> str:
    templates = COMMANDS[command]
    return next((t for t in ([templates] if isinstance(templates, str) else templates) if f"{{{name}}}" in t), "")


# ------------------------------------------------------------------ the world every command runs in

def axis(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, typing.Any]:
    """An axis data folder with its PKI, hub key and database (G22 and H41 registered), agency keys, a signed
    packet, a catalogue, a credential, a TSA, an audit export, TLS files: a good file for every placeholder."""
    root = tmp_path_factory.mktemp("mistakes")
    data = root / "data"
    env = {"AXIS_DATA": str(data)}

    def ok(*args: object) -> Result:
        result = axis(*args, env=env)
        assert result.exit_code == 0, (args, result.output)
        return result
    ok("pki", "init", data / "pki")
    for code in ("AXIS", G22, H41):
        ok("pki", "issue", code, "--pki", data / "pki", "--out", data / "hub" if code == "AXIS" else root / "keys")
    for code in (G22, H41):
        ok("agency", "add", code, "--name", code, "--cert", root / "keys" / f"{code}.cert.pem")
    ok("packet", "new", "--from", G22, "--to", H41, "--subject", "x", "-o", root / "unsigned.edxml")
    ok("packet", "sign", root / "unsigned.edxml", "--key", root / "keys" / f"{G22}.key.pem", "--cert",
       root / "keys" / f"{G22}.cert.pem", "-o", root / "signed.edxml")
    credential = json.loads(ok("credentials", "issue", "--agency", G22, "--json").stdout)["credential"]
    (root / "credential").write_text(credential + "\n")
    ok("tsa", "init", root / "tsa")
    ok("audit", "export", root / "export")
    ok("pki", "tls", "localhost", "--pki", data / "pki", "--out", root / "tls")
    (root / "catalogue.csv").write_text(f"code,name,parent\n{G22},{G22},\n")
    (root / "calendar.txt").write_text("2026-01-01\n")
    (root / "inbox").mkdir()
    (root / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    (root / "plain.txt").write_text("hello\n")
    key, cert = root / "keys" / f"{G22}.key.pem", root / "keys" / f"{G22}.cert.pem"
    good = {"key": key, "cert": cert, "trust": data / "pki" / "ca.pem", "crl": data / "pki" / "crl.pem",
            "gateway_ca": data / "pki" / "ca.pem", "tsa_trust": root / "tsa" / "tsa-root.pem",
            "credential": root / "credential", "packet": root / "signed.edxml", "packets": root / "signed.edxml",
            "catalogue": root / "catalogue.csv", "calendar": root / "calendar.txt", "attach": root / "plain.txt",
            "against": root / "plain.txt", "bundle": root / "plain.txt", "export": root / "export",
            "pki_dir": data / "pki", "inbox": root / "inbox", "tls_cert": root / "tls" / "localhost.tls.cert.pem",
            "tls_key": root / "tls" / "localhost.tls.key.pem", "signer": root / "no-signer.sock"}
    return {"root": root, "env": env, "good": good}


def _good(world: dict[str, typing.Any], command: str, name: str, kind: str, scratch: Path) -> Path:
    good: dict[str, Path] = world["good"]
    if command == "tsa serve":
        return world["root"] / "tsa" / ("tsa.key" if name == "key" else "tsa.pem")
    if command in ("serve", "gateway", "signer serve") and name in ("key", "cert"):
        return world["root"] / "data" / "hub" / f"AXIS.{name}.pem"
    if command in ("status send", "inbox pull") and name in ("key", "cert"):  # H41 acts
        return world["root"] / "keys" / f"{H41}.{name}.pem"
    if kind in ("out", "outdir", "socket") and name not in good:
        return scratch / f"{name}-{kind}"
    return good.get(name, scratch / name)


# ------------------------------------------------------------------ the mistakes

def _mistakes(kind: str, has_pair: bool) -> list[str]:
    if kind in ("key", "cert", "crl"):
        wrong = ["missing", "folder", "garbage", "empty", "other-kind"] + (["mismatch"] if kind == "key" and has_pair
                                                                           else [])
        return [*wrong, "unreadable"]
    if kind in ("file", "any"):
        return ["missing", "folder", "unreadable"] + (["empty"] if kind == "file" else [])
    if kind == "dir":
        return ["missing", "a-file"]
    return ["under-a-file"]  # out, outdir, socket: where nothing can be written


def _make(mistake: str, kind: str, command: str, world: dict[str, typing.Any], scratch: Path) -> Path:
    root: Path = world["root"]
    if mistake == "missing":
        return scratch / "no-such-file.pem"
    if mistake == "folder":
        (scratch / "a-folder.pem").mkdir()
        return scratch / "a-folder.pem"
    if mistake == "garbage":
        return shutil.copy(root / "garbage.pem", scratch / "garbage.pem")
    if mistake == "empty":
        (scratch / "empty.pem").write_bytes(b"")
        return scratch / "empty.pem"
    if mistake == "other-kind":  # a certificate where a key or CRL belongs; a key where a certificate belongs
        source = root / "keys" / (f"{G22}.key.pem" if kind == "cert" else f"{G22}.cert.pem")
        return shutil.copy(source, scratch / f"other-kind-{source.name}")
    if mistake == "mismatch":  # a real key, of another certificate than the command's
        other = G22 if command in ("status send", "inbox pull") else H41
        return shutil.copy(root / "keys" / f"{other}.key.pem", scratch / "mismatched.key.pem")
    if mistake == "unreadable":
        path = scratch / "unreadable.pem"
        path.write_text("secret")
        path.chmod(0)
        return path
    if mistake == "a-file":
        return shutil.copy(root / "plain.txt", scratch / "a-file-not-a-folder")
    assert mistake == "under-a-file"
    return shutil.copy(root / "plain.txt", scratch / "plain-file") / "below"


# Commands that start processes (a signer, workers, a server) before they serve cost a second or more a run:
# they get the mistakes that reach different code (a missing file, garbage, a key that is not the certificate's);
# the others are the same loaders every command shares, tried in full on the quick commands.
SERVERS = {"serve", "gateway", "signer serve", "tsa serve", "demo"}
CASES = [pytest.param(command, name, mistake, id=f"{command}:{name}:{mistake}")
         for command, kinds in PARAMETERS.items() for name, kind in kinds.items()
         for mistake in _mistakes(kind, has_pair=kind == "key" and "cert" in kinds)
         if command not in SERVERS or mistake in ("missing", "garbage", "mismatch", "under-a-file")]


class _Hung(Exception):
    pass


def _alarm(*_: object) -> None:
    raise _Hung


@pytest.mark.parametrize("command, name, mistake", CASES)
def test_a_mistake_is_at_most_three_lines(world: dict[str, typing.Any], tmp_path: Path, command: str, name: str,
                                          mistake: str) -> None:
    if mistake == "unreadable" and ROOT:
        pytest.skip("running as root, which reads a file of mode 000: the folder-in-its-place case stands in")
    kinds = PARAMETERS[command]
    values = {n: _good(world, command, n, k, tmp_path) for n, k in kinds.items()}
    wrong = _make(mistake, kinds[name], command, world, tmp_path)
    values[name] = wrong
    args = [word.format(**values) for word in _template(command, name).split()]
    args = [{"G22": G22, "H41": H41}.get(a, a) for a in args]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)  # a server that did not notice the mistake would serve for ever
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1", **world["env"]})
    except _Hung:
        pytest.fail(f"axis {' '.join(args)} did not stop on its mistake")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    output = result.output
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("warning:")]
    assert result.exit_code != 0, output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), \
        (output, result.exception)
    assert 1 <= len(lines) <= 3, output
    if (command, name) not in UNNAMED:
        named = wrong.parent.name if mistake == "under-a-file" else wrong.name
        assert named in output, output  # the message names the file it is about


# Where this table's world cannot reach the file: the command stops earlier, for a reason of its own (still in at
# most three lines, without a traceback).
UNNAMED = {("evidence get", "out"): "no document to take evidence of: that needs a hub",
           ("audit checkpoint", "out"): "no checkpoint to write: `axis serve` signs them"}


# ------------------------------------------------------------------ the mistakes' exact words, where they matter

def test_packet_sign_names_the_key_that_is_not_the_certificates(world: dict[str, typing.Any], tmp_path: Path) -> None:
    root = world["root"]
    result = axis("packet", "sign", root / "signed.edxml", "--key", root / "keys" / f"{H41}.key.pem", "--cert",
                  root / "keys" / f"{G22}.cert.pem", "--out", tmp_path / "out.xml")
    assert result.exit_code == 2 and not (tmp_path / "out.xml").exists()
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and "does not belong to the certificate" in line and G22 in line


def test_version() -> None:
    from importlib.metadata import version

    result = axis("--version")
    assert result.exit_code == 0 and result.output.strip() == f"axis {version('axis-backbone')}", result.output
