"""The one error type for user mistakes.

The CLI turns a :class:`UserError` into a one-line message on stderr and exit status 2; any
other exception is a bug in facegan and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (path, option, file). The message names the problem and the fix."""
