"""The one exception type users see.

Anything that is the user's input being wrong (a file, a flag, a download) raises
`GPTClassifyError` with a one-line message that names the file, line or field. The CLI prints
that line and exits with status 1; it never shows a traceback for these.
"""


class GPTClassifyError(Exception):
    """A problem with the user's input or environment, explained in one line."""
