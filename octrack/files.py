"""Writing files so that a crash never leaves one that looks complete, and a full disk is one line.

Every file and folder octrack writes is first written under a temporary name next to its target (a hidden
name with `.partial` in it) and renamed onto the target only when complete; a folder replaces the previous one
in one exchange (`model.keras` and `settings.json` of a model folder always belong together). A run killed
midway leaves its temporary files behind; the next run that writes there removes them (`remove_leftovers`).
"""

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from octrack.errors import UserError, is_disk_full

PARTIAL = ".partial"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to `target`; renames it onto `target` only if the block succeeds.

    Works for files and for folders: whatever the block creates at the yielded path replaces `target`.
    The temporary name ends with the target's suffix, for writers that insist on one (Keras: `.keras`).
    A full disk becomes a `UserError` naming the target; the previous target stays as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{PARTIAL}{target.suffix}",
                                     dir=target.parent)
    os.close(fd)
    os.unlink(temporary)
    temporary = Path(temporary)
    try:
        try:
            yield temporary
            _replace(temporary, target)
        except Exception as error:
            if is_disk_full(error):
                raise disk_full_error(target, error) from None
            raise
    finally:
        _remove(temporary)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _replace(source: Path, target: Path) -> None:
    """Moves `source` onto `target`; a folder is exchanged with the old one in one step where the system can
    (Linux's renameat2), so that no moment sees half of each, then the old one (now at `source`) is removed."""
    if source.is_dir() and target.is_dir() and not target.is_symlink():
        if not _exchange(source, target):
            aside = source.with_name(source.name + ".previous")
            os.replace(target, aside)
            os.replace(source, target)
            shutil.rmtree(aside, ignore_errors=True)
        return
    os.replace(source, target)


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two paths atomically (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, Windows: CDLL(None) is a TypeError there)
        return False
    at_current_folder, rename_exchange = -100, 2
    return renameat2(at_current_folder, os.fsencode(first), at_current_folder, os.fsencode(second),
                     rename_exchange) == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def remove_leftovers(folder: Path, prefix: str = ".") -> list[Path]:
    """Removes the temporary files and folders that killed runs left in `folder` (not in its subfolders):
    hidden names with `.partial` in them, starting with `prefix` (e.g. `.model_detect.`). Call it only while
    holding the lock of what is written there (octrack/lock.py), so that no running writer loses its file."""
    if not folder.is_dir():
        return []
    leftovers = [path for path in folder.iterdir() if path.name.startswith(prefix) and PARTIAL in path.name]
    for path in leftovers:
        _remove(path)
    return leftovers


def disk_full_error(target: Path, error: BaseException) -> UserError:
    what = "the disk quota is exceeded" if getattr(error, "errno", None) == errno.EDQUOT else "the disk is full"
    return UserError(f"{target}: {what} (writing {target.name}); free some space or write elsewhere, and run "
                     f"again (what was written before is intact)")
