"""Durable file writes for adapters: a file either exists complete and on disk, or not at all.

Callers may rely on:
- `write_atomic(path, data)` returning only once `path` holds exactly `data`
  and both the file and its directory entry are flushed to disk (fsync), so a
  crash or power cut afterwards cannot lose or truncate it; a crash before it
  returns leaves at most a hidden `.<name>.<pid>.<random>.tmp` file beside it,
  never a partial `path`;
- `write_temporary(path, data)` + `publish_temporary(tmp, path)` being the
  same two steps, split so a caller can record the temporary name durably in
  between (see `adapters.inbox`).

Applications that watch a folder must read only the final names (`*.edxml`,
`*.xml`) and ignore hidden `*.tmp` files.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from axis.private import FILE_MODE

TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename is durable only once its directory is)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk (one written by someone else, e.g. as a download arrived)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temporary(path: Path, data: bytes) -> Path:
    """Write `data` to a fresh temporary file beside `path` and fsync it; return its name."""
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def publish_temporary(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` (atomic; replaces an older `path`) and make the rename durable."""
    os.replace(tmp, path)
    fsync_directory(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is never seen partial and survives a crash once this returns."""
    tmp = write_temporary(path, data)
    try:
        publish_temporary(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
