"""Hostile and malformed XML is refused with a stable code, without touching files or the network."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from axis.edxml.safe import Limits, parse_xml, parse_xml_file
from axis.refusals import PacketError, RefusalCode

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "hostile"

EXPECTED = {
    "billion_laughs.xml": RefusalCode.FORBIDDEN_XML,
    "external_entity.xml": RefusalCode.FORBIDDEN_XML,
    "external_dtd.xml": RefusalCode.FORBIDDEN_XML,
    "parameter_entity.xml": RefusalCode.FORBIDDEN_XML,
    "bom_doctype.xml": RefusalCode.FORBIDDEN_XML,
    "utf16_doctype.xml": RefusalCode.FORBIDDEN_XML,
    "undeclared_entity.xml": RefusalCode.MALFORMED,
    "deep_nesting.xml": RefusalCode.LIMIT_EXCEEDED,
}


@pytest.fixture
def canary(tmp_path: Path):
    """A FIFO: a parser that opens it for reading blocks, so any attempt to read it shows."""
    path = tmp_path / "canary"
    os.mkfifo(path)
    return path


def _parse_watching(data: bytes, canary: Path, from_file: Path | None = None) -> PacketError:
    """Parse `data` (from the file `from_file`, written first, when given: `parse_xml_file`)."""
    outcome: dict[str, BaseException] = {}
    if from_file is not None:
        from_file.write_bytes(data)

    def run() -> None:
        try:
            parse_xml_file(from_file) if from_file is not None else parse_xml(data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        # The parser is blocked opening the FIFO: it tried to read the file. Unblock it and fail.
        os.close(os.open(canary, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the parser opened the canary file")
    with pytest.raises(OSError):  # ENXIO: nobody has the FIFO open for reading
        os.close(os.open(canary, os.O_WRONLY | os.O_NONBLOCK))
    assert isinstance(outcome.get("exc"), PacketError), f"expected a refusal, got {outcome!r}"
    return outcome["exc"]  # type: ignore[return-value]


@pytest.mark.parametrize("from_file", [False, True], ids=["bytes", "file"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_vector_is_refused_without_reading_files(name: str, from_file: bool, canary: Path,
                                                         tmp_path: Path) -> None:
    raw = (VECTORS / name).read_bytes()
    if name.startswith("utf16"):
        data = raw.decode("utf-16").replace("@CANARY@", str(canary)).encode("utf-16")
    else:
        data = raw.replace(b"@CANARY@", str(canary).encode())
    refusal = _parse_watching(data, canary, tmp_path / "packet.xml" if from_file else None)
    assert refusal.code is EXPECTED[name]
    assert str(refusal).startswith(f"AX{EXPECTED[name].number} ")


def test_external_entity_over_http_opens_no_connection() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        data = (f'<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:{port}/leak">]>'
                f'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&e;</edXML>').encode()
        with pytest.raises(PacketError) as info:
            parse_xml(data)
        assert info.value.code is RefusalCode.FORBIDDEN_XML
        with pytest.raises(socket.timeout):
            server.accept()


def test_oversized_input_is_refused_before_parsing() -> None:
    limits = Limits(max_bytes=1024)
    data = b"<edXML>" + b"x" * 2000 + b"</edXML>"
    with pytest.raises(PacketError) as info:
        parse_xml(data, limits)
    assert info.value.code is RefusalCode.TOO_LARGE
    assert "2015 bytes" in info.value.detail


def test_too_many_elements_is_refused() -> None:
    data = b"<r>" + b"<a/>" * 100_001 + b"</r>"
    with pytest.raises(PacketError) as info:
        parse_xml(data)
    assert info.value.code is RefusalCode.LIMIT_EXCEEDED


def test_text_node_over_libxml2_limit_without_huge_tree() -> None:
    # With a size cap under 10 MB libxml2's own limits stay on.
    limits = Limits(max_bytes=9_000_000)
    data = b"<r>" + b"A" * 8_999_000 + b"</r>"
    assert parse_xml(data, limits).tag == "r"


@pytest.mark.parametrize("data, line, column", [
    (b"1212<?xml version='1.0'?><r/>", 1, 1),
    (b"<r>\n  <a>\n</r>", 3, 3),
    (b"<r xmlns:e='urn:x'>\n<e:a x:y='1'/></r>", 2, 13),
])
def test_malformed_names_line_and_column(data: bytes, line: int, column: int) -> None:
    with pytest.raises(PacketError) as info:
        parse_xml(data)
    assert info.value.code is RefusalCode.MALFORMED
    assert info.value.detail.startswith(f"line {line}, column ")


@pytest.mark.parametrize("data", [b"", b"   \n", b"\x00\x01\x02", b"<", b"\xff\xfe<\x00"])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(PacketError) as info:
        parse_xml(data)
    assert info.value.code in (RefusalCode.MALFORMED, RefusalCode.FORBIDDEN_XML)


def test_malformed_sdk_samples_name_line_and_column(samples_dir: Path) -> None:
    with pytest.raises(PacketError) as info:
        parse_xml((samples_dir / "edoc.edxml").read_bytes())
    assert info.value.code is RefusalCode.MALFORMED
    assert info.value.detail.startswith("line 116, column 39:")
    assert "xlink" in info.value.detail
    with pytest.raises(PacketError) as info:
        parse_xml((samples_dir / "edoc_new.edxml").read_bytes())
    assert info.value.code is RefusalCode.MALFORMED
    assert info.value.detail.startswith("line 1, column 1:")


def test_parse_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        parse_xml("<r/>")  # type: ignore[arg-type]


def test_a_file_is_parsed_with_the_same_checks_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "packet.xml"
    path.write_bytes(b"<edXML>" + b"x" * 2000 + b"</edXML>")
    with pytest.raises(PacketError) as info:
        parse_xml_file(path, Limits(max_bytes=1024))
    assert info.value.code is RefusalCode.TOO_LARGE and "2015 bytes" in info.value.detail
    for data in (b"", b"   \n", b"<", b"<r>\n  <a>\n</r>", b"<r>" + b"<a/>" * 100_001 + b"</r>"):
        path.write_bytes(data)
        with pytest.raises(PacketError) as info:
            parse_xml_file(path)
        assert info.value.code is parse_code(data)
    # A DOCTYPE after the first 64 KiB (past a long comment) is still refused, by the check after parsing.
    path.write_bytes(b"<!--" + b"c" * 70_000 + b'--><!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>')
    with pytest.raises(PacketError) as info:
        parse_xml_file(path)
    assert info.value.code is RefusalCode.FORBIDDEN_XML
    # A text node over libxml2's 10 MB cap (a large attachment) parses, as from bytes.
    path.write_bytes(b"<r>" + b"A" * 11_000_000 + b"</r>")
    assert len(parse_xml_file(path).text or "") == 11_000_000


def parse_code(data: bytes) -> RefusalCode:
    with pytest.raises(PacketError) as info:
        parse_xml(data)
    return info.value.code
