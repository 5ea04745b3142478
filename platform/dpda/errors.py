"""Errors a user can cause and fix (bad audio, manifests, configs, search spaces).

The CLI prints them as one line naming the file, line or key, without a traceback.
"""


class UserError(Exception):
    """A problem in the user's input; the message names the file, line or key."""
