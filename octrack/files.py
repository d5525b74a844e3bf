"""Writing files so that a crash never leaves one that looks complete."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to `target`; renames it onto `target` only if the block succeeds.

    Works for files and for folders: whatever the block creates at the yielded path replaces `target`.
    The temporary name ends with the target's suffix, for writers that insist on one (Keras: `.keras`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".partial{target.suffix}",
                                     dir=target.parent)
    os.close(fd)
    os.unlink(temporary)
    temporary = Path(temporary)
    try:
        yield temporary
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(temporary, target)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
