"""Exceptions the store raises on purpose.

Callers may rely on: `MissingDatabase` from `open_store` for a SQLite file
or a PostgreSQL database that does not exist (nothing is created then);
`DuplicateDocument` being a `RegistryError` with code DUPLICATE (AX407) and
carrying `existing_axis_id`; `NotFound` also being a `LookupError`; and no
other database exception escaping for the cases these name (other database
errors propagate as SQLAlchemy exceptions and roll back the unit of work).
"""
from __future__ import annotations

from axis.refusals import RefusalCode, RegistryError


class StoreError(Exception):
    """A store operation could not be done as asked."""


class MissingDatabase(StoreError):
    """The database named does not exist, and the caller did not ask to create it.

    Its message is one line naming the database (never a password).
    """


class NotFound(StoreError, LookupError):
    """The agency, certificate, document or delivery named does not exist."""


class AlreadyExists(StoreError):
    """A row with this identity already exists with different content."""


class DuplicateDocument(RegistryError):
    """The (sender, DocumentId, kind) key was already accepted.

    Nothing was written for the duplicate and the unit of work stays usable:
    the insert uses ON CONFLICT DO NOTHING, so no statement failed.
    """

    def __init__(self, existing_axis_id: str, sender_code: str, document_id: str, kind: str) -> None:
        self.existing_axis_id = existing_axis_id
        self.sender_code = sender_code
        self.document_id = document_id
        self.kind = kind
        super().__init__(
            RefusalCode.DUPLICATE,
            f"{kind} {document_id!r} from {sender_code} was already accepted as axis id {existing_axis_id}",
        )
