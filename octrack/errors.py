"""Errors that are the user's to fix.

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is a bug (exit 1).
"""


class UserError(Exception):
    """A mistake in the user's input (ini file, paths, image files) with a message that says how to fix it."""
