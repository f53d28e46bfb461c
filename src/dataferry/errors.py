"""The exceptions dataferry raises, in one tree.

    FerryError                  root: the CLI prints its message as one line, exit 1
    ├── UsageError              bad flags or arguments, missing model directory (exit 2)
    ├── ModelError              the model files cannot be loaded at all
    ├── SecretError             a ${env:..} / ${file:..} reference cannot be resolved
    ├── SourceError             reading a producer's system failed
    ├── SinkError               writing to a consumer's system failed
    ├── MetadataError           the metadata database is misconfigured or refused
    ├── StoreError              the dataset store refused an operation
    │   └── VerificationError   a hash, signature or chain link does not verify
    └── AuthError               authentication or authorization failed

Every error is either *transient* (worth retrying with backoff: network, lock timeouts)
or *terminal* (bad credentials, schema mismatch: fail fast). ``transient`` says which.

Every error also says whether its message may hold *row values* (a failing check's example
rows, a value that does not fit its type, a database's ``Failing row contains (...)``).
``public`` is the error's text without any row value or key, set where the message is
built from the model and metadata only (``public=True``) or given as a text of its own;
None means the message may hold values. The run history shows ``public`` to everyone
who may see the run and the full message only to those who may read the rows.
"""

from __future__ import annotations


class FerryError(Exception):
    """Base of every error dataferry raises on purpose; its message is for the user."""

    transient: bool = False
    exit_code: int = 1
    public: str | None = None
    """The message without row values or keys (None: it may hold some); see the module."""

    def __init__(self, *args: object, public: str | bool | None = None) -> None:
        super().__init__(*args)
        if public is True:
            self.public = str(self)
        elif isinstance(public, str):
            self.public = public


class UsageError(FerryError):
    """The command was called wrongly (bad flag, missing model directory)."""

    exit_code = 2


class ModelError(FerryError):
    """The model cannot be loaded (for findings in valid files, see ``Finding``)."""


class SecretError(FerryError):
    """A secret reference could not be resolved where the job runs."""


class SourceError(FerryError):
    """Reading from a producer's system failed."""


class SinkError(FerryError):
    """Writing to a consumer's system failed."""


class StoreError(FerryError):
    """The dataset store refused an operation."""


class VerificationError(StoreError):
    """A file, manifest, signature or chain link does not verify."""


class MetadataError(FerryError):
    """The metadata database is misconfigured or refused an operation."""


class AuthError(FerryError):
    """Authentication or authorization failed."""


class TransientError(FerryError):
    """A failure worth retrying (connection refused, timeout, lock conflict)."""

    transient = True
