"""Errors the user sees. Each message is one line that names the file, field or server at fault."""


class QAError(Exception):
    """Base class: the CLI prints str(error) and exits non-zero, no traceback."""


class InputError(QAError):
    """An input file (or a record in it) that cannot be ingested."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class StoreError(QAError):
    """The vector store is unreachable or inconsistent."""


class EmbedderMismatch(StoreError):
    """A collection built with one embedder is opened with another."""


class BackendError(QAError):
    """An embedding or LLM backend failed (unreachable, bad key, timeout)."""


class NotFound(QAError):
    """An article or collection that does not exist."""
