"""S3: the deployer's own assets bucket, revision uploads, and emptying a bucket.

The assets bucket ``deployer-assets-<account>-<region>`` holds what stacks fetch at boot
(the ``etherpad/`` folder as a tarball, for the ``AssetsUrl`` parameter) and templates too
large to send inline. It is created on first use with public access blocked and default
encryption, and every call names the expected owner, so a bucket of that name owned by
someone else is never written to.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from deployer.aws.errors import Caller
from deployer.base.errors import CloudError, ConfigError, NotFound
from deployer.cloud.port import Artifact

# Instances may read objects under this prefix of any bucket (the stacks' instance role).
ASSETS_PREFIX = "deployer/"
SINGLE_PUT_LIMIT = 5 * 2**30


def assets_bucket_name(account: str, region: str) -> str:
    return f"deployer-assets-{account}-{region}"


def tarball(folder: Path) -> bytes:
    """A reproducible .tgz of a folder: same files, same bytes, same key in S3."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


class Storage:
    def __init__(self, caller: Caller, s3: Any, account: str, region: str) -> None:
        self.caller = caller
        self.s3 = s3
        self.account = account
        self.region = region

    @property
    def assets_bucket(self) -> str:
        return assets_bucket_name(self.account, self.region)

    def ensure_assets_bucket(self) -> str:
        bucket = self.assets_bucket
        try:
            self.caller(self.s3, "head_bucket", Bucket=bucket, ExpectedBucketOwner=self.account)
            return bucket
        except NotFound:
            pass
        except CloudError as exc:
            raise CloudError(f"bucket {bucket} exists but is not usable by account "
                             f"{self.account}: {exc}",
                             hint="delete it or grant this account access") from exc
        create: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":  # us-east-1 rejects its own name as a constraint
            create["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.caller(self.s3, "create_bucket", **create)
        self.caller(self.s3, "put_public_access_block", Bucket=bucket,
                    ExpectedBucketOwner=self.account,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": True, "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        self.caller(self.s3, "put_bucket_encryption", Bucket=bucket,
                    ExpectedBucketOwner=self.account,
                    ServerSideEncryptionConfiguration={"Rules": [
                        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        return bucket

    def _put_once(self, key: str, body: bytes) -> None:
        """Content-addressed keys: an object already there has these very bytes."""
        bucket = self.ensure_assets_bucket()
        try:
            self.caller(self.s3, "head_object", Bucket=bucket, Key=key,
                        ExpectedBucketOwner=self.account)
            return
        except NotFound:
            pass
        self.caller(self.s3, "put_object", Bucket=bucket, Key=key, Body=body,
                    ExpectedBucketOwner=self.account)

    def upload_assets(self, folder: Path) -> str:
        """The ``etherpad/`` folder as a tarball in the assets bucket; its s3:// URL."""
        body = tarball(folder)
        key = f"{ASSETS_PREFIX}etherpad-assets-{hashlib.sha256(body).hexdigest()[:16]}.tgz"
        self._put_once(key, body)
        return f"s3://{self.assets_bucket}/{key}"

    def upload_template(self, name: str, text: str) -> str:
        """A template too large to send inline; the https URL CloudFormation reads it from."""
        body = text.encode()
        key = f"{ASSETS_PREFIX}templates/{name}-{hashlib.sha256(body).hexdigest()[:16]}.yaml"
        self._put_once(key, body)
        return f"https://{self.assets_bucket}.s3.{self.region}.amazonaws.com/{key}"

    def put_artifact(self, bucket: str, key: str, path: Path) -> Artifact:
        size = path.stat().st_size
        if size > SINGLE_PUT_LIMIT:
            raise ConfigError(f"{path} is {size / 2**30:.1f} GiB; a revision must be under "
                              "5 GiB", location=str(path))
        with path.open("rb") as body:
            answer = self.caller(self.s3, "put_object", Bucket=bucket, Key=key, Body=body,
                                 ExpectedBucketOwner=self.account)
        return Artifact(bucket=bucket, key=key, etag=answer["ETag"].strip('"'),
                        version=answer.get("VersionId"), size=size)

    def empty_bucket(self, bucket: str) -> int:
        """Delete every object version and delete marker (CloudFormation can't delete a
        non-empty bucket); how many were deleted."""
        deleted = 0
        while True:
            try:
                page = self.caller(self.s3, "list_object_versions", Bucket=bucket,
                                   ExpectedBucketOwner=self.account, MaxKeys=1000)
            except NotFound:
                return deleted
            objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                       for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if not objects:
                return deleted
            answer = self.caller(self.s3, "delete_objects", Bucket=bucket,
                                 ExpectedBucketOwner=self.account,
                                 Delete={"Objects": objects, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise CloudError(f"cannot empty bucket {bucket}: {first.get('Key')}: "
                                 f"{first.get('Message')}")
            deleted += len(objects)
