"""Object storage under an S3-compatible bucket: the operations the store needs.

``store: s3://bucket/prefix`` in ferry.yaml puts the store there. Credentials, region and
endpoint come from the standard AWS variables and files (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``~/.aws/credentials``, ``AWS_ENDPOINT_URL`` for MinIO, R2 or Ceph),
never from the model. boto3 is imported only for such a store (the ``s3`` extra).

The one operation beyond get/put/list/delete is the conditional put (``If-None-Match:
*``): it writes an object only if none exists under its key, so of two writers racing
for one key exactly one wins. A version's manifest is committed that way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dataferry.errors import StoreError, UsageError
from dataferry.store.disk import is_no_room

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class Location:
    """``s3://bucket/prefix``: where a store lives in a bucket."""

    bucket: str
    prefix: str
    """Without leading or trailing slashes; empty for the bucket's root."""

    @classmethod
    def parse(cls, url: str) -> Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise UsageError(f"store {url}: expected s3://bucket/prefix (or a local folder)")
        if parsed.query or parsed.fragment:
            raise UsageError(f"store {url}: an s3:// store has no query or fragment; the "
                             "endpoint and credentials come from the AWS variables and files")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def url(self, relative: str = "") -> str:
        key = self.key(relative) if relative else self.prefix
        return f"{S3_SCHEME}{self.bucket}/{key}" if key else f"{S3_SCHEME}{self.bucket}"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime


class ObjectStore:
    """One bucket through boto3's S3 client (thread-safe; connections are pooled)."""

    def __init__(self, location: Location, client: Any = None) -> None:
        self.location = location
        self._client = client
        self._conditional_checked = False

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise UsageError(f"store {self.location.url()}: an s3:// store needs boto3; "
                                 "pip install 'dataferry[s3]'") from None
            config = Config(signature_version="s3v4",
                            retries={"max_attempts": 5, "mode": "standard"},
                            request_checksum_calculation="when_required")
            # a session of its own: the credentials as the environment says now
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _fail(self, action: str, key: str, error: Exception) -> StoreError:
        code = _code(error)
        hint = {
            "NoSuchBucket": "create the bucket, or fix store: in ferry.yaml",
            "AccessDenied": "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID)",
            "InvalidAccessKeyId": "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID)",
            "SignatureDoesNotMatch": "check the AWS credentials (AWS_SECRET_ACCESS_KEY)",
        }.get(code, "check the bucket, the endpoint (AWS_ENDPOINT_URL) and the credentials")
        what = code or type(error).__name__
        return StoreError(f"cannot {action} {S3_SCHEME}{self.location.bucket}/{key}: {what}; "
                          f"{hint}", public=True)

    # --- reading -----------------------------------------------------------------------

    def under(self, relative_prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``relative_prefix`` (under the store's prefix)."""
        prefix = self.location.key(relative_prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"], int(item["Size"]), item["ETag"].strip('"'),
                                     item["LastModified"])
        except Exception as error:
            raise self._fail("list", prefix, error) from None

    def datasets(self) -> Iterator[tuple[str, str]]:
        """(team, dataset) of every ``<team>/<dataset>/_sig/genesis.json`` in the store."""
        for team in self._children(self.location.key("")):
            for dataset in self._children(f"{team}"):
                name = dataset[len(team):].strip("/")
                if self.metadata(f"{dataset}_sig/genesis.json") is not None:
                    yield team[len(self.location.key("")):].strip("/"), name

    def _children(self, prefix: str) -> Iterator[str]:
        """The "folders" right under ``prefix`` (keys up to the next slash)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix,
                                           Delimiter="/"):
                for item in page.get("CommonPrefixes", ()):
                    yield str(item["Prefix"])
        except Exception as error:
            raise self._fail("list", prefix, error) from None

    def get(self, key: str) -> bytes | None:
        """An object's bytes (None when there is none)."""
        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=key)
            return bytes(response["Body"].read())
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", key, error) from None

    def metadata(self, key: str) -> Mapping[str, str] | None:
        try:
            response = self.client.head_object(Bucket=self.location.bucket, Key=key)
            return dict(response.get("Metadata", {}))
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("read", key, error) from None

    def download(self, key: str, target: Path) -> None:
        """Stream an object to ``target`` (through a temp name: never a partial file).

        The temp name is this call's own: the worker threads of one ``ferry up`` may pull
        one dataset's mirror at once, and with a name per process one moved the file the
        other was about to move ("cannot download ...: FileNotFoundError")."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.download")
        try:
            self.client.download_file(self.location.bucket, key, str(temp))
            os.replace(temp, target)
        except Exception as error:
            temp.unlink(missing_ok=True)
            if is_no_room(error):
                raise StoreError(f"cannot download {S3_SCHEME}{self.location.bucket}/{key} "
                                 f"to {target.parent}: no space left on the device; make "
                                 "room there (the mirror of an s3:// store lives under the "
                                 "home: folder of ferry.yaml)", public=True) from None
            raise self._fail("download", key, error) from None

    def presign(self, key: str, seconds: int) -> str:
        """A URL anyone holding it can GET the object with, for ``seconds``."""
        try:
            return str(self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.location.bucket, "Key": key},
                ExpiresIn=seconds))
        except Exception as error:
            raise self._fail("sign a URL for", key, error) from None

    # --- writing -----------------------------------------------------------------------

    def upload(self, source: Path, key: str) -> str:
        """Upload a file (streamed, in parts when large); S3 checks each part's SHA-256 on
        arrival, so a corrupted transfer fails. Returns the object's ETag."""
        try:
            self.client.upload_file(str(source), self.location.bucket, key,
                                    ExtraArgs={"ChecksumAlgorithm": "SHA256"})
            response = self.client.head_object(Bucket=self.location.bucket, Key=key)
            return str(response["ETag"]).strip('"')
        except Exception as error:
            raise self._fail("upload", key, error) from None

    def put(self, key: str, data: bytes, *, if_absent: bool = False,
            metadata: Mapping[str, str] | None = None) -> str | None:
        """Write an object and return its ETag; with ``if_absent`` only if none exists
        (None: one did)."""
        arguments: dict[str, Any] = {
            "Bucket": self.location.bucket, "Key": key, "Body": data,
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
        if if_absent:
            arguments["IfNoneMatch"] = "*"
        if metadata:
            arguments["Metadata"] = dict(metadata)
        try:
            response = self.client.put_object(**arguments)
            return str(response["ETag"]).strip('"')
        except Exception as error:
            if if_absent and _code(error) in ("PreconditionFailed", "412",
                                              "ConditionalRequestConflict", "409"):
                return None
            raise self._fail("write", key, error) from None

    def require_conditional_puts(self) -> None:
        """Refuse to write to a store that ignores ``If-None-Match`` (once per process):
        there two writers racing for one version could both "win" and fork the chain."""
        if self._conditional_checked:
            return
        probe = self.location.key(f"_ferry/conditional-put-{uuid.uuid4().hex}")
        try:
            honoured = self.put(probe, b"1", if_absent=True) is not None and self.put(
                probe, b"2", if_absent=True) is None
        finally:
            self.delete([probe])
        if not honoured:
            raise StoreError(f"store {self.location.url()}: this object store ignores "
                             "conditional writes (If-None-Match: *), so two writers could "
                             "both publish one version; dataferry does not write there. "
                             "Use a store that has them (AWS S3, MinIO, R2) or a local "
                             "store; nothing was published", public=True)
        self._conditional_checked = True

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3's limit per request
            batch = keys[start:start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception as error:
                raise self._fail("delete", batch[0], error) from None
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(f"cannot delete {S3_SCHEME}{self.location.bucket}/"
                                 f"{first.get('Key')}: {first.get('Code')} "
                                 f"({len(errors)} objects not deleted); run ferry gc again",
                                 public=True)


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return ""
