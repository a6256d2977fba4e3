"""The one exception type users see.

Anything that is the user's input being wrong (a file, a flag, a download) raises
`GPTClassifyError` with a one-line message that names the file, line or field. The CLI prints
that line and exits with status 1; it never shows a traceback for these.

It is a `ValueError`: Python's (and scikit-learn's) exception for "the right type, a wrong
value", so code that already catches `ValueError` around a library call (scikit-learn's own
estimator checks among it) catches ours too, and `except GPTClassifyError` still catches only
ours.
"""


class GPTClassifyError(ValueError):
    """A problem with the user's input or environment, explained in one line."""
