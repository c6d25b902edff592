"""An agency's receipt folder: one file per Axis receipt it received, exactly as signed.

`state_dir/receipts/` holds the signed receipt bytes (verifiable offline with the
axis and agency certificates). The file name says what the receipt answers,
so any process of the agency sharing the folder finds a receipt without an index:

| receipt | file |
|---|---|
| intake (accepted, duplicate, refused) | `intake_<submission id>.xml` |
| delivery (signed by the recipient)    | `delivery_<axis id>_<recipient>.xml` |
| error (delivery failed)               | `error_<axis id or submission id>_<recipient or ->.xml` |

The submission id of an intake receipt is the one in the transport header
`ax-submission`: when the hub answers a duplicate it re-sends the FIRST
receipt's bytes (whose `Submission` names the first submission) under the new
submission id, so both submissions find their answer.

Callers may rely on: `save` returns once the file is durable (atomic write,
fsync); a file present is complete; saving the same receipt again replaces it
with the same content.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from adapters.files import write_atomic
from axis.private import private_directory
from axis.receipt import Receipt, read_receipt

_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,199}")


def check_name_part(value: str | None, what: str) -> str:
    """`value` if it is safe inside a file name (letters, digits, `.` and `-`); ValueError otherwise."""
    if value is None or not _NAME_PART.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an id Axis issues (1-200 letters, digits, '.' or '-')")
    return value


def receipt_file_name(receipt: Receipt, submission: str | None) -> str:
    """The file a receipt is stored under; `submission` is the transport header's submission id."""
    if receipt.kind == "intake":
        return f"intake_{check_name_part(submission or receipt.submission, 'submission id')}.xml"
    if receipt.kind == "delivery":
        return (f"delivery_{check_name_part(receipt.axis_id, 'axis id')}_"
                f"{check_name_part(receipt.recipient, 'recipient code')}.xml")
    subject = receipt.axis_id if receipt.axis_id is not None else (submission or receipt.submission)
    recipient = check_name_part(receipt.recipient, "recipient code") if receipt.recipient else "-"
    return f"error_{check_name_part(subject, 'axis or submission id')}_{recipient}.xml"


class ReceiptStore:
    """The receipts folder of one agency (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, data: bytes, receipt: Receipt, *, submission: str | None) -> Path:
        """Store the signed bytes durably; returns the file. ValueError if the ids are not file-safe."""
        path = self.directory / receipt_file_name(receipt, submission)
        if path.exists():
            # The hub answers each submission, and each delivery, once (a repeat is the same bytes):
            # the first receipt stored stands, and a later one, replayed or forged, cannot replace it.
            return path
        private_directory(self.directory)
        write_atomic(path, data)
        return path

    def intake(self, submission_id: str) -> Receipt | None:
        """The intake receipt stored for this submission, or None if none arrived yet."""
        path = self.directory / f"intake_{check_name_part(submission_id, 'submission id')}.xml"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return read_receipt(data)

    def files(self) -> Iterator[Path]:
        if not self.directory.is_dir():
            return iter(())
        return (p for p in sorted(self.directory.iterdir())
                if p.suffix == ".xml" and not p.name.startswith("."))

    def all(self) -> list[tuple[Path, Receipt]]:
        """Every stored receipt with its file, oldest first (by receipt time, then name)."""
        found = [(path, read_receipt(path.read_bytes())) for path in self.files()]
        return sorted(found, key=lambda item: (item[1].time, item[0].name))
