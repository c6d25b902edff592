"""Files Axis creates are readable by its own user only: folders 0700, files 0600.

The SQLite files hold plaintext bodies, the PKI folder holds private keys, and an
agency's state folder holds the documents it received. The `axis` command sets
`PRIVATE_UMASK` once when it starts (`restrict_umask`), which covers everything it
and the libraries under it create, SQLite's `-wal` and `-shm` files included. The
library also creates its own files through `private_directory` and `private_file`,
so that a program embedding it (an agency system using the SDK) gets the same
modes whatever its umask.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> None:
    """Make every file and folder this process creates from now on private to its user."""
    os.umask(PRIVATE_UMASK)


def private_directory(path: str | os.PathLike[str]) -> Path:
    """Create the folder `path` and its missing parents 0700; an existing folder keeps its mode. Returns it."""
    folder = Path(path)
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):  # Path.mkdir(parents=True) would give the parents the umask's mode
        each.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
    return Path(path)


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create `path` empty and 0600 if it does not exist; an existing file, or a missing folder, is left alone.

    SQLite creates a database's `-wal`, `-shm` and journal files with the database
    file's mode, so creating a database file here first makes all of them private.
    A missing folder stays missing: whoever opens the file next reports it.
    """
    file = Path(path)
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    return file
