"""Which keys may sign a dataset's next version, and refusing a key that may not.

The genesis names the keys allowed to sign; a manifest's ``keys`` (or gc's checkpoint)
rotates them. A version signed by any other key would be published and then fail every
``ferry verify`` and every clone: so the writers ask here first. Where several machines
publish to one store, each must hold the same team keys (``ferry keys --generate`` once,
then share ``<home>/keys``; docs/deploy.md).
"""

from __future__ import annotations

from dataferry.errors import StoreError
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.keys import fingerprint


def allowed_signers(dataset: DatasetStore, head: Version) -> set[str]:
    """The public keys (hex) that may sign the version after ``head``: those of the latest
    key rotation (a manifest's ``keys``, or gc's checkpoint), else the genesis's."""
    for number in reversed([n for n in dataset.version_numbers() if n <= head.number]):
        rotated = dataset.version(number).manifest.keys
        if rotated is not None:
            return set(rotated)
    checkpoint = dataset.checkpoint()
    return set(checkpoint.keys if checkpoint is not None else dataset.genesis().keys)


def may_sign_next(dataset: DatasetStore, head: Version | None, public_key: str) -> bool:
    """Whether ``public_key`` may sign the version after ``head``. Cheap in the usual case
    (the head's own signer, no rotation at the head): no other manifest is read."""
    if head is None:
        return public_key in dataset.genesis().keys
    if head.manifest.keys is not None:
        return public_key in head.manifest.keys
    if head.signature.key == public_key:
        return True
    return public_key in allowed_signers(dataset, head)


def require_signer(dataset: DatasetStore, head: Version | None, public_key: str,
                   key_directory: object) -> None:
    """Raise ``StoreError`` unless ``public_key`` may sign the version after ``head``."""
    if may_sign_next(dataset, head, public_key):
        return
    signer = head.signature.key if head is not None else dataset.genesis().keys[0]
    raise StoreError(
        f"{dataset.ref}: the signing key of team {dataset.team} in {key_directory} "
        f"({fingerprint(bytes.fromhex(public_key))}) may not sign this dataset, whose "
        f"versions are signed by {fingerprint(bytes.fromhex(signer))}; nothing was written. "
        "Every machine that publishes to one store needs the same team keys: copy "
        "<home>/keys from the machine that made them (see `ferry keys --generate` and "
        "docs/deploy.md)")
