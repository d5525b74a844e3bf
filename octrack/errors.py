"""Errors that are the user's to fix.

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is a bug (exit 1). A full disk is the user's too (`is_disk_full`).
"""

import errno

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "errno = 28", "errno = 122")


class UserError(Exception):
    """A mistake in the user's input (ini file, paths, image files) with a message that says how to fix it."""


def is_disk_full(error: BaseException | None) -> bool:
    """True for a full disk or an exceeded quota, also where a library (h5py, Keras) wraps the OSError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        if any(words in str(error).lower() for words in _DISK_FULL_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return False
