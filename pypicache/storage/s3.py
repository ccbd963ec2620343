"""The blob store in an S3-API bucket: verified uploads, streamed and ranged reads."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pypicache.digests import checked_sha256, is_sha256
from pypicache.errors import StorageUnavailable
from pypicache.storage.local import InUse, StoredObject, TempFileWriter, not_stored, refused

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # multipart above this, in parts of this size
REDIRECT_EXPIRY = 300  # seconds a presigned download URL stays valid
SHA256_METADATA = "sha256"  # x-amz-meta-sha256: what the writer hashed, checked on verify
_S3_ERRORS = (BotoCoreError, ClientError, Boto3Error)
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9._+-]+")
_UPLOAD_ID = "?uploadId="  # joins key and upload id in a stale upload's location


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


class S3BlobStore:
    """Blobs at ``<prefix>/ab/cd/<sha256>`` in a bucket; partial files in a local ``tmp``.

    As with the local store, a handle ``open`` returns counts as "in use" in
    this process until it is closed, so retention never deletes a blob this
    process is sending.  A client sent to a presigned URL is not counted.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        tmp: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        redirect: bool = False,
        part_size: int = PART_SIZE,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        redirect_expiry: int = REDIRECT_EXPIRY,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp = tmp
        self.redirect = redirect
        self.redirect_expiry = redirect_expiry
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": retries + 1, "mode": "standard"},
            signature_version="s3v4",
            # Custom endpoints (MinIO, SeaweedFS, ...) rarely have a DNS name per bucket.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            max_pool_connections=32,  # waitress threads and fills share the client
        )
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        self.transfer = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4
        )
        self._in_use = InUse()

    # -- names -------------------------------------------------------------------------------

    def key(self, sha256: str) -> str:
        """The object key of blob ``sha256``; InvalidDigest unless it is a digest."""
        checked_sha256(sha256)
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _failed(self, action: str, key: str, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(f"object store: {action} s3://{self.bucket}/{key} failed: {exc}")

    # -- the protocol ------------------------------------------------------------------------

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD answer, or None when there is no such object."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except _S3_ERRORS as exc:
            if _status(exc) == 404:
                return None
            raise self._failed("HEAD", key, exc) from None

    def exists(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            refused(sha256, "look up")
            return False
        return self.head(self.key(sha256)) is not None

    def size(self, sha256: str) -> int | None:
        if not is_sha256(sha256):
            refused(sha256, "look up")
            return None
        head = self.head(self.key(sha256))
        return None if head is None else int(head["ContentLength"])

    def open(self, sha256: str) -> S3Reader:
        """A streaming handle on the blob; FileNotFoundError if it is not stored."""
        if not is_sha256(sha256):
            raise not_stored(sha256)
        # Counted before we look, so a deletion deciding meanwhile sees it in use.
        with self._in_use.lock:
            self._in_use.add(sha256)
        try:
            return self._reader(self.key(sha256), lambda: self._in_use.release(sha256))
        except BaseException:
            self._in_use.release(sha256)
            raise

    def _reader(self, key: str, release: Callable[[], None] | None = None) -> S3Reader:
        # One GET, not a HEAD and then a GET: its answer has the size, and most readers
        # want every byte from the first (a seek drops the body and asks for a range).
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except _S3_ERRORS as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None
            raise self._failed("GET", key, exc) from None
        return S3Reader(
            self, key, int(answer["ContentLength"]), answer.get("ETag"), release, answer["Body"]
        )

    def in_use(self, sha256: str) -> bool:
        """Whether a handle on the blob is open in this process (a download in progress)."""
        with self._in_use.lock:
            return self._in_use.busy(sha256)

    def writer(self) -> S3BlobWriter:
        return S3BlobWriter(self)

    def delete(self, sha256: str) -> None:
        if not is_sha256(sha256):
            refused(sha256, "delete")
            return
        self.delete_location(self.key(sha256))

    def delete_unless_in_use(self, sha256: str) -> bool:
        """Delete the blob unless this process is serving it; True when it is gone."""
        if not is_sha256(sha256):
            refused(sha256, "delete")
            return True  # no blob has that name
        with self._in_use.lock:
            if self._in_use.busy(sha256):
                return False
            self.delete(sha256)
            return True

    def download_url(self, sha256: str, filename: str) -> str | None:
        """A presigned GET of the blob when redirects are on (the client fetches it itself)."""
        if not self.redirect or not is_sha256(sha256):
            return None
        params = {
            "Bucket": self.bucket,
            "Key": self.key(sha256),
            "ResponseContentType": "application/octet-stream",
        }
        if _SAFE_FILENAME.fullmatch(filename):
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.redirect_expiry
        )

    # -- writing -----------------------------------------------------------------------------

    def publish(self, path: Path, sha256: str, size: int) -> None:
        """Upload ``path`` as blob ``sha256`` and check what the bucket then holds.

        StorageUnavailable unless the object is there at the end, whole and
        labelled with its hash; a wrong object this upload left is deleted.
        """
        key = self.key(sha256)
        if self._holds(self.head(key), sha256, size):
            return  # content addressed: the same bytes are stored already
        try:
            self.client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={
                    "Metadata": {SHA256_METADATA: sha256},
                    "ContentType": "application/octet-stream",
                },
                Config=self.transfer,
            )
        except _S3_ERRORS as exc:
            # A failed PUT stores nothing; a failed multipart upload is aborted by boto3.
            raise self._failed("upload to", key, exc) from None
        head = self.head(key)
        if not self._holds(head, sha256, size):
            found = (
                "nothing"
                if head is None
                else (
                    f"{head.get('ContentLength')} bytes labelled "
                    f"{head.get('Metadata', {}).get(SHA256_METADATA)!r}"
                )
            )
            if head is not None:
                self.delete_location(key)
            raise StorageUnavailable(
                f"object store: s3://{self.bucket}/{key} did not verify after the upload: "
                f"expected {size} bytes labelled {sha256!r}, found {found}; removed"
            )

    @staticmethod
    def _holds(head: dict[str, Any] | None, sha256: str, size: int) -> bool:
        return (
            head is not None
            and int(head.get("ContentLength", -1)) == size
            and head.get("Metadata", {}).get(SHA256_METADATA) == sha256
        )

    # -- for verify --------------------------------------------------------------------------

    def objects(self) -> Iterator[StoredObject]:
        """Every object under the prefix, whatever its key says."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(
                        item["Key"].rsplit("/", 1)[-1],
                        item["Key"],
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                    )
        except _S3_ERRORS as exc:
            raise self._failed("listing", prefix, exc) from None

    def location(self, sha256: str) -> str:
        return self.key(sha256)

    def open_location(self, location: str) -> S3Reader:
        return self._reader(location)

    def delete_location(self, location: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=location)
        except _S3_ERRORS as exc:
            raise self._failed("DELETE", location, exc) from None

    def set_aside(self, sha256: str, target: Path) -> bool:
        """Download the blob to ``target``, then delete it; False when it is not stored."""
        try:
            reader = self.open(sha256)
        except FileNotFoundError:
            return False
        partial = target.with_name(target.name + ".part")
        with reader, partial.open("wb") as out:
            while chunk := reader.read(PART_SIZE):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        self.delete(sha256)
        return True

    def stale_uploads(self, started_before: float) -> list[StoredObject]:
        """Multipart uploads under the prefix begun before ``started_before``, never finished.

        ``location`` is ``<key>?uploadId=<id>``; ``size`` the bytes of the parts sent.
        """
        prefix = f"{self.prefix}/" if self.prefix else ""
        found = []
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    started = upload["Initiated"].timestamp()
                    if started >= started_before:
                        continue  # perhaps running now
                    key, upload_id = upload["Key"], upload["UploadId"]
                    parts = self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    size = sum(int(part["Size"]) for part in parts.get("Parts", []))
                    found.append(StoredObject(key, f"{key}{_UPLOAD_ID}{upload_id}", size, started))
        except _S3_ERRORS as exc:
            raise self._failed("listing the uploads under", prefix, exc) from None
        return found

    def abort_upload(self, location: str) -> None:
        key, _, upload_id = location.partition(_UPLOAD_ID)
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except _S3_ERRORS as exc:
            if _status(exc) != 404:  # finished or aborted meanwhile: gone either way
                raise self._failed("aborting the upload to", key, exc) from None


class S3Reader(io.RawIOBase):
    """A streamed GetObject; a seek only moves the position, the next read asks for a Range.

    Never holds more than one read's bytes; closing it closes the HTTP body.
    """

    def __init__(
        self,
        store: S3BlobStore,
        key: str,
        size: int,
        etag: str | None,
        release: Callable[[], None] | None,
        body: Any = None,
    ) -> None:
        super().__init__()
        self.size = size
        self._store = store
        self._key = key
        self._etag = etag
        self._release = release
        self._position = 0
        self._body: Any = body  # the answer to a GET from the first byte, or None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._position:
            self._drop_body()
            self._position = target
        return self._position

    def read(self, size: int | None = -1, /) -> bytes:
        if self.closed:
            raise ValueError("read of a closed blob handle")
        wanted = self.size - self._position if size is None or size < 0 else size
        if wanted <= 0 or self._position >= self.size:
            return b""
        if self._body is None:
            self._body = self._get(self._position)
        try:
            data = self._body.read(min(wanted, self.size - self._position))
        except (*_S3_ERRORS, OSError) as exc:
            self._drop_body()
            raise self._store._failed("reading", self._key, exc) from None
        if not data:
            self._drop_body()
            raise StorageUnavailable(
                f"object store: s3://{self._store.bucket}/{self._key} ended at byte "
                f"{self._position} of {self.size}"
            )
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def _get(self, start: int) -> Any:
        arguments: dict[str, str] = {"Bucket": self._store.bucket, "Key": self._key}
        if start:
            arguments["Range"] = f"bytes={start}-"
        if self._etag:
            arguments["IfMatch"] = self._etag  # the object we measured, not a newer one
        try:
            return self._store.client.get_object(**arguments)["Body"]
        except _S3_ERRORS as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(f"s3://{self._store.bucket}/{self._key}") from None
            raise self._store._failed("GET", self._key, exc) from None

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._drop_body()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
            super().close()


class S3BlobWriter(TempFileWriter):
    """Hashes into a local temp file (which readers may tail); ``commit`` uploads and verifies."""

    def __init__(self, store: S3BlobStore) -> None:
        super().__init__(store.tmp)
        self._store = store

    def commit(self, expected_sha256: str | None) -> str:
        """Store the blob if it hashes to ``expected_sha256`` (when given); return its sha256.

        Returns only once the bucket holds the object, verified; otherwise
        HashMismatch (nothing uploaded) or StorageUnavailable.  The temp file is
        read back first, so a write the local disk cut short is never uploaded.
        """
        digest = self.checked_digest(expected_sha256)
        self.seal(digest)
        try:
            self._store.publish(self.temp_path, digest, self.size)
        finally:
            self.temp_path.unlink(missing_ok=True)
        return digest
