"""The artifact store (an S3 bucket per stack) and the parameter store (SSM)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from deployer.base.errors import NotFound
from deployer.cloud.port import Artifact
from deployer.localcloud import names


class ArtifactStore:
    """Buckets as directories; objects keep their versions like a versioned S3 bucket."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "buckets"

    def _object_dir(self, bucket: str, key: str) -> Path:
        # Checked here too, not only at the API: a bucket of "/any/dir" or a key with ".."
        # would name a directory outside the store.
        return self.dir / names.bucket(bucket) / names.key(key)

    def put(self, bucket: str, key: str, source: Path) -> Artifact:
        if not source.is_file():
            raise NotFound(f"cannot upload {source}: no such file")
        md5 = hashlib.md5()
        with open(source, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                md5.update(chunk)
        etag = md5.hexdigest()
        versions = self._object_dir(bucket, key)
        versions.mkdir(parents=True, exist_ok=True)
        version = f"{len(list(versions.iterdir())) + 1:06d}-{etag[:8]}"
        shutil.copyfile(source, versions / version)
        return Artifact(bucket=bucket, key=key, etag=etag, version=version,
                        size=source.stat().st_size)

    def path_of(self, artifact: Artifact) -> Path:
        path = self._object_dir(artifact.bucket, artifact.key) / names.version(artifact.version)
        if not path.is_file():
            raise NotFound(f"s3://{artifact.bucket}/{artifact.key} version {artifact.version} "
                           "does not exist")
        return path

    def size_of_bucket(self, bucket: str) -> int:
        root = self.dir / names.bucket(bucket)
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    def delete_bucket(self, bucket: str) -> None:
        shutil.rmtree(self.dir / names.bucket(bucket), ignore_errors=True)
