"""One writer at a time: a command that writes a cache, a training or a dataset's predictions holds a lock on
it, and a second command that would write the same is refused with one line.

The lock is the operating system's (`flock` on a hidden `.octrack-NAME.lock` file in the folder written), so a
run that crashes or is killed (even with SIGKILL) releases it at once: nothing stuck. The file says who holds
it (command, process id, host, since when), for the message; a run that ends removes it (a killed run leaves
an empty-handed file, which the next run simply locks). A process that
already holds a lock may take it again (e.g. `octrack train` runs prepare inside). Where the system has no
`flock` (Windows), no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from octrack.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is not taken there (os.pread/pwrite are missing too)
    fcntl = None

_held: set[Path] = set()  # the lock files this process holds


def lock_path(folder: Path, name: str) -> Path:
    return folder / f".octrack-{name}.lock"


@contextlib.contextmanager
def writing(folder: Path, name: str, what: str) -> Iterator[None]:
    """Holds the lock `name` of `folder` (created if need be) while the block runs; `what` says what is written
    there, for the message of a refused second writer."""
    path = lock_path(folder, name).absolute()
    if path in _held or fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = _locked(path, folder, what)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, _describe_self().encode("utf-8"), 0)
        _held.add(path)
        yield
    finally:
        _held.discard(path)
        path.unlink(missing_ok=True)  # while still locked: no one else holds a lock on this file
        os.close(descriptor)  # releases the lock


def _locked(path: Path, folder: Path, what: str) -> int:
    """A descriptor of the lock file at `path`, locked; a UserError where another process holds it. A lock file
    that its holder removed (on release) between our open and our lock is not the lock any more: open again."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise UserError(f"{folder}: another octrack command is writing {what} here ({holder}); wait until it "
                            f"ends, or give this one another output folder") from None
        if _same_file(descriptor, path):
            return descriptor
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _describe_self() -> str:
    command = " ".join(["octrack", *sys.argv[1:3]]) if sys.argv else "octrack"
    return (f"`{command}`, process {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")


def _holder(descriptor: int) -> str:
    text = os.pread(descriptor, 1000, 0).decode("utf-8", errors="replace").strip()
    return text or "a process that just started"
