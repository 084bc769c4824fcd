"""S3-compatible storage (AWS S3, Cloudflare R2, MinIO) through boto3.

The same contract as ``LocalStorage``: keys come only from validated ids, and ``put`` is idempotent:
each object carries the sha256 of its bytes in its user metadata, and a ``HEAD`` before every upload
means a rerun of a batch never uploads the same bytes twice.

URLs are ``{public_base_url}/{object key}`` when a CDN (or an R2 public bucket domain) fronts the
bucket, or presigned GET URLs otherwise. Credentials are passed straight to boto3 and never kept on
this object, so they cannot show up in its repr, in logs or in error messages; unset credentials fall
back to boto3's default chain (``AWS_*`` variables, ``~/.aws``, an instance or pod role).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from contentforge.errors import InvalidInput
from contentforge.files import atomic_writer
from contentforge.storage.keys import validate_key, validate_prefix
from contentforge.storage.protocol import StorageError, StoredObject

if TYPE_CHECKING:
    # Types only (boto3-stubs[s3], a dev dependency): never imported at run time.
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

SHA256_META = "sha256"
_META_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_META_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")
MAX_METADATA_BYTES = 2048  # S3's limit on user-defined metadata (keys plus values)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class PutItem:
    """One object of a ``put_many`` batch."""

    key: str
    data: bytes
    content_type: str
    metadata: Mapping[str, str] | None = None


def _reveal(value: SecretStr | str | None) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return text or None


def clean_metadata(metadata: Mapping[str, str] | None, digest: str) -> dict[str, str]:
    """Validate user metadata (HTTP-header safe, within S3's 2 KB) and add the content sha256."""
    cleaned: dict[str, str] = {}
    for raw_key, raw_value in (metadata or {}).items():
        key = str(raw_key).lower().replace("_", "-")
        value = str(raw_value)
        if not _META_KEY.fullmatch(key):
            raise InvalidInput(f"metadata key {raw_key!r} is not allowed (use a-z, 0-9 and '-')")
        if not _META_VALUE.fullmatch(value):
            raise InvalidInput(
                f"metadata value of {raw_key!r} must be printable ASCII of at most 1024 characters"
            )
        cleaned[key] = value
    cleaned[SHA256_META] = digest
    size = sum(len(k) + len(v) for k, v in cleaned.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"object metadata is {size} bytes; S3 allows at most {MAX_METADATA_BYTES}")
    return cleaned


class S3Storage:
    """Objects in one bucket under an optional key prefix."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        prefix: str = "",
        access_key_id: SecretStr | str | None = None,
        secret_access_key: SecretStr | str | None = None,
        public_base_url: str | None = None,
        presign_expiry_s: int = 3600,
        max_workers: int = 8,
        client: S3Client | None = None,
    ) -> None:
        if not bucket or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise InvalidInput(
                f"S3 bucket name {bucket!r} is not valid (3-63 characters: a-z, 0-9, '.', '-'); "
                "check CONTENTFORGE_S3_BUCKET"
            )
        if endpoint_url and not re.match(r"^https?://[^/\s]+", endpoint_url):
            raise InvalidInput(
                f"CONTENTFORGE_S3_ENDPOINT_URL {endpoint_url!r} must be an http:// or https:// URL"
            )
        if addressing_style not in ("auto", "path", "virtual"):
            raise InvalidInput(f"S3 addressing style {addressing_style!r} must be auto, path or virtual")
        if presign_expiry_s < 1 or presign_expiry_s > 604800:
            raise InvalidInput("presigned URL expiry must be between 1 second and 7 days (604800 s)")
        key_id, secret = _reveal(access_key_id), _reveal(secret_access_key)
        if (key_id is None) != (secret is None):
            missing = (
                "CONTENTFORGE_S3_SECRET_ACCESS_KEY" if secret is None else "CONTENTFORGE_S3_ACCESS_KEY_ID"
            )
            raise InvalidInput(f"S3 credentials are incomplete: set {missing} too, or neither of the two")

        self.bucket = bucket
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.prefix = validate_prefix(prefix)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_expiry_s = presign_expiry_s
        self.max_workers = max(1, max_workers)
        if region is None and self.endpoint_url and ".r2.cloudflarestorage.com" in self.endpoint_url:
            region = "auto"  # R2 signs with region "auto"
        self.region = region
        if client is None:
            client = _shared_client(
                self.endpoint_url, region, addressing_style, key_id, secret, self.max_workers
            )
        self._client = client

    def __repr__(self) -> str:
        endpoint = self.endpoint_url or "aws"
        return f"S3Storage(bucket={self.bucket!r}, endpoint={endpoint!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client (thread-safe), e.g. to register botocore event hooks."""
        return self._client

    # -- keys and URLs -------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The bucket key of a storage key: the prefix plus the validated key."""
        return self.prefix + validate_key(key)

    def url_for(self, key: str) -> str:
        object_key = self.object_key(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{object_key}"
        return self.presigned_url(key)

    def presigned_url(self, key: str, expires_in: int | None = None) -> str:
        """A GET URL that works without credentials until it expires (signed locally, no request)."""
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.object_key(key)},
                ExpiresIn=expires_in or self.presign_expiry_s,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("presign", key, exc) from None

    # -- reads ---------------------------------------------------------------------------------

    def head(self, key: str) -> HeadObjectOutputTypeDef | None:
        """The object's HEAD response, or None when there is no such object."""
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise self._error("HEAD", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("HEAD", key, exc) from None

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            return response["Body"].read()
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise FileNotFoundError(f"no object {key!r} in bucket {self.bucket!r}") from None
            raise self._error("GET", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("GET", key, exc) from None

    def metadata(self, key: str) -> dict[str, str]:
        """The object's user metadata (persona, piece, tier, sha256...); FileNotFoundError if absent."""
        head = self.head(key)
        if head is None:
            raise FileNotFoundError(f"no object {key!r} in bucket {self.bucket!r}")
        return dict(head.get("Metadata", {}))

    def download(self, key: str, path: Path | str) -> Path:
        """Stream the object to ``path`` atomically, checking its sha256 when the object has one."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise FileNotFoundError(f"no object {key!r} in bucket {self.bucket!r}") from None
            raise self._error("GET", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("GET", key, exc) from None
        expected = response.get("Metadata", {}).get(SHA256_META)
        digest = hashlib.sha256()
        with atomic_writer(target) as handle:
            for chunk in response["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
            if expected and digest.hexdigest() != expected:
                raise StorageError(f"download of {key!r} does not match its recorded sha256; not saved")
        return target

    # -- writes --------------------------------------------------------------------------------

    def put(
        self, key: str, data: bytes, content_type: str, *, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Upload unless an object with the same sha256 is already there (checked with one HEAD)."""
        object_key = self.object_key(key)
        digest = hashlib.sha256(data).hexdigest()
        meta = clean_metadata(metadata, digest)
        if not content_type or "/" not in content_type:
            raise InvalidInput(f"content type {content_type!r} is not a MIME type such as image/png")
        head = self.head(key)
        if head is not None and head.get("Metadata", {}).get(SHA256_META) == digest:
            return StoredObject(key, self.url_for(key), digest, len(data), written=False)
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type, Metadata=meta
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("PUT", key, exc) from None
        return StoredObject(key, self.url_for(key), digest, len(data), written=True)

    def put_many(
        self, items: Iterable[PutItem | Sequence[Any]], max_workers: int | None = None
    ) -> list[StoredObject]:
        """Upload many objects concurrently; results in input order.

        Every key, content type and metadata map is validated before the first upload, so bad input
        never leaves a half-uploaded batch. Each item keeps ``put``'s idempotency.
        """
        batch = [item if isinstance(item, PutItem) else PutItem(*item) for item in items]
        seen: set[str] = set()
        for item in batch:
            validate_key(item.key)
            clean_metadata(item.metadata, "0" * 64)
            if item.key in seen:
                raise InvalidInput(f"key {item.key!r} appears twice in one upload batch")
            seen.add(item.key)
        if not batch:
            return []
        workers = min(max_workers or self.max_workers, len(batch))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-put") as pool:
            return list(
                pool.map(lambda i: self.put(i.key, i.data, i.content_type, metadata=i.metadata), batch)
            )

    def copy(self, src_key: str, dst_key: str) -> StoredObject:
        """Server-side copy keeping content type and metadata; a no-op when ``dst`` already matches."""
        source = self.head(src_key)
        if source is None:
            raise FileNotFoundError(f"no object {src_key!r} in bucket {self.bucket!r}")
        digest = source.get("Metadata", {}).get(SHA256_META, "")
        size = int(source.get("ContentLength", 0))
        target = self.head(dst_key)
        if digest and target is not None and target.get("Metadata", {}).get(SHA256_META) == digest:
            return StoredObject(dst_key, self.url_for(dst_key), digest, size, written=False)
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=self.object_key(dst_key),
                CopySource={"Bucket": self.bucket, "Key": self.object_key(src_key)},
                MetadataDirective="COPY",
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("COPY", src_key, exc) from None
        return StoredObject(dst_key, self.url_for(dst_key), digest, size, written=True)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error("DELETE", key, exc) from None

    # -- errors --------------------------------------------------------------------------------

    def _error(self, operation: str, key: str, exc: Exception) -> StorageError:
        """A one-line error naming bucket, key and the server's code, never the credentials."""
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
        else:
            detail = type(exc).__name__
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                detail += " (set CONTENTFORGE_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY or AWS_* variables)"
            elif type(exc).__name__ in ("EndpointConnectionError", "ConnectTimeoutError"):
                detail += f" (cannot reach {self.endpoint_url or 'AWS S3'})"
        return StorageError(f"S3 {operation} of {key!r} in bucket {self.bucket!r} failed: {detail}")


_clients: dict[tuple[Any, ...], S3Client] = {}
_clients_lock = threading.Lock()


def _shared_client(
    endpoint_url: str | None,
    region: str | None,
    addressing_style: str,
    key_id: str | None,
    secret: str | None,
    max_workers: int,
) -> S3Client:
    """One boto3 client per configuration and process (building one is slow: docs/benchmarks.md;
    clients are thread-safe and keep their connection pool), so storage built per task call stays cheap."""
    secret_id = hashlib.sha256(secret.encode()).hexdigest() if secret else None
    cache_key = (endpoint_url, region, addressing_style, key_id, secret_id, max_workers)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            # A session of our own: boto3's default session is not safe to create clients from threads.
            session = boto3.session.Session(
                aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
            )
            options: dict[str, Any] = {
                "signature_version": "s3v4",
                "s3": {"addressing_style": addressing_style},
                "retries": {"max_attempts": 5, "mode": "standard"},
                "connect_timeout": 10,
                "read_timeout": 60,
                "max_pool_connections": max(10, max_workers),
            }
            if endpoint_url:
                # Third-party S3 servers (R2, MinIO) differ in which optional checksums they accept;
                # send and check them only where the operation requires them.
                options["request_checksum_calculation"] = "when_required"
                options["response_checksum_validation"] = "when_required"
            client = session.client("s3", endpoint_url=endpoint_url, config=Config(**options))
            _clients[cache_key] = client
        return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
