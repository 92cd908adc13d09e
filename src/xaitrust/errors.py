"""Exceptions raised at the public boundary.

``XaitrustError`` marks a user mistake (bad input, missing file, unknown name): the command line prints its message
without a traceback. Every subclass is also a ``ValueError`` so that callers catching the standard type still work.
"""


class XaitrustError(ValueError):
    """A user-facing error whose message says what was wrong and how to fix it."""


class DatasetNotFoundError(XaitrustError, FileNotFoundError):
    """The files of a dataset are not where they were looked for."""
