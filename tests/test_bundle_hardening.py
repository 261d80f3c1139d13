"""Revision bundles an attacker (or a broken build) made: nothing lands outside, nothing huge.

What was covered already (tests/localcloud/test_codedeploy_agent.py): entries with ``..`` or
absolute names, links whose text points out, device files. Here: chains of links that each
look harmless but lead out once on disk, archive bombs (size and entry count), an oversized
appspec, unreadable archives — in zip, tar and directory bundles — and that a refused
bundle leaves nothing half-unpacked behind.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from deployer.base.errors import ConfigError
from deployer.localcloud.codedeploy import install as codedeploy_install
from deployer.localcloud.codedeploy.install import Revision, read_revision_appspec, unpack_bundle

APPSPEC = b"version: 0.0\nos: linux\n"


def zip_bundle(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    """entries: (name, file bytes or None, symlink target or None)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("appspec.yml", APPSPEC)
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            if link is not None:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, link)
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, data or b"")
    return path


def tar_bundle(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in [("appspec.yml", APPSPEC, None), *entries]:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tf.addfile(info)
            else:
                info.size = len(data or b"")
                tf.addfile(info, io.BytesIO(data or b""))
    return path


def dir_bundle(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    path.mkdir()
    (path / "appspec.yml").write_bytes(APPSPEC)
    for name, data, link in entries:
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if link is not None:
            target.symlink_to(link)
        else:
            target.write_bytes(data or b"")
    return path


MAKERS = {"zip": (zip_bundle, "r.zip"), "tgz": (tar_bundle, "r.tgz"),
          "directory": (dir_bundle, "r")}


def bundle(tmp_path: Path, kind: str, entries) -> Revision:
    make, name = MAKERS[kind]
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return Revision(bundle=make(folder / name, entries))


def refused(tmp_path: Path, revision: Revision, match: str, record=None,
            title: str = "") -> ConfigError:
    archive = tmp_path / "deploy" / "deployment-archive"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if record is not None:
        record.title = title
        record.where = "a CodeDeploy revision (DownloadBundle)"
    with pytest.raises(ConfigError, match=match) as caught:
        read_revision_appspec(revision)
        unpack_bundle(revision, archive)
    assert not archive.exists(), "a refused bundle was left half-unpacked"
    if record is not None:
        record.message = str(caught.value).replace(str(tmp_path) + "/", "")
    return caught.value


@pytest.mark.parametrize("kind", ["zip", "tgz", "directory"])
def test_a_chain_of_links_that_leads_out_is_refused(tmp_path: Path, kind: str, bad_input):
    # Each link alone looks inside: "s" is the bundle itself, "t" is "s/../outside" = "outside"
    # by its text. On disk s/.. is the folder above the bundle.
    revision = bundle(tmp_path, kind, [("s", None, "."), ("t", None, "s/../outside")])
    error = refused(tmp_path, revision, "outside the (bundle|destination)", bad_input,
                    f"bundle ({kind}): a chain of links leading out (s -> ., t -> s/../x)")
    assert "'t'" in str(error)


@pytest.mark.parametrize("kind", ["zip", "directory"])
def test_a_file_written_through_a_link_chain_never_lands_outside(tmp_path: Path, kind: str,
                                                                 bad_input):
    revision = bundle(tmp_path, kind, [("s", None, "."), ("up", None, "s/.."),
                                       ("up/escaped.sh", b"#!/bin/sh\necho pwned\n", None)]
                      if kind == "zip" else [("s", None, "."), ("up", None, "s/..")])
    refused(tmp_path, revision, "outside the bundle", bad_input,
            f"bundle ({kind}): a file written through a link to the folder above")
    assert not (tmp_path / "deploy" / "escaped.sh").exists()


@pytest.mark.parametrize("kind", ["zip", "tgz", "directory"])
def test_links_that_stay_inside_are_kept(tmp_path: Path, kind: str):
    # node_modules/.bin links are everywhere in a real revision: they must keep working.
    revision = bundle(tmp_path, kind, [("pkg/bin/tool", b"#!/bin/sh\n", None),
                                       ("node_modules/.bin/tool", None, "../../pkg/bin/tool")])
    archive = tmp_path / "deployment-archive"
    read_revision_appspec(revision)
    unpack_bundle(revision, archive)
    link = archive / "node_modules/.bin/tool"
    assert link.is_symlink() and link.resolve() == (archive / "pkg/bin/tool").resolve()


@pytest.mark.parametrize("kind", ["zip", "tgz", "directory"])
def test_an_archive_bomb_is_refused_before_it_fills_the_disk(tmp_path: Path, kind: str,
                                                             monkeypatch, bad_input):
    monkeypatch.setattr(codedeploy_install, "MAX_BUNDLE_BYTES", 64 * 1024)
    # 1 MB of zeros: a few KB compressed, far over the (lowered) limit unpacked.
    revision = bundle(tmp_path, kind, [("app/zeros.bin", bytes(1024 * 1024), None)])
    refused(tmp_path, revision, "unpacks to more than 65,536 bytes", bad_input,
            f"bundle ({kind}): an archive bomb (limit lowered to 64 KiB for the test)")


@pytest.mark.parametrize("kind", ["zip", "tgz", "directory"])
def test_too_many_entries_are_refused(tmp_path: Path, kind: str, monkeypatch, bad_input):
    monkeypatch.setattr(codedeploy_install, "MAX_BUNDLE_ENTRIES", 20)
    revision = bundle(tmp_path, kind, [(f"app/f{i}", b"x", None) for i in range(40)])
    refused(tmp_path, revision, "more than 20 entries", bad_input,
            f"bundle ({kind}): too many entries (limit lowered to 20 for the test)")


def test_a_zip_whose_sizes_lie_is_refused_not_unpacked_in_full(tmp_path: Path, monkeypatch):
    path = zip_bundle(tmp_path / "liar.zip", [("app/data.bin", bytes(200_000), None)])
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("app/data.bin")
    # Declare 10 bytes instead of 200,000, in the local header and the central directory:
    # the size check before unpacking believes it; unpacking must not.
    raw = bytearray(path.read_bytes())
    raw[info.header_offset + 22:info.header_offset + 26] = (10).to_bytes(4, "little")
    central = raw.rindex(b"app/data.bin") - 46  # the name follows a 46-byte central header
    assert raw[central:central + 4] == b"PK\x01\x02"
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("app/data.bin").file_size == 10
    monkeypatch.setattr(codedeploy_install, "MAX_BUNDLE_BYTES", 100_000)
    archive = tmp_path / "deployment-archive"
    with pytest.raises(ConfigError, match=r"cannot be unpacked|more than"):
        unpack_bundle(Revision(bundle=path), archive)
    assert not archive.exists()


def test_an_oversized_appspec_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(codedeploy_install, "MAX_APPSPEC_BYTES", 1000)
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("appspec.yml", APPSPEC + b"#" * 5000 + b"\n")
    with pytest.raises(ConfigError, match=r"appspec.yml in the bundle is 5,024 bytes"):
        read_revision_appspec(Revision(bundle=path))


def test_an_appspec_that_is_a_link_or_not_utf8_is_refused(tmp_path: Path):
    linked = tmp_path / "linked.tgz"
    with tarfile.open(linked, "w:gz") as tf:
        info = tarfile.TarInfo("appspec.yml")
        info.type = tarfile.SYMTYPE
        info.linkname = "real.yml"
        tf.addfile(info)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_revision_appspec(Revision(bundle=linked))
    latin = tmp_path / "latin.zip"
    with zipfile.ZipFile(latin, "w") as zf:
        zf.writestr("appspec.yml", "version: 0.0\nos: linux\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_revision_appspec(Revision(bundle=latin))


def test_a_truncated_archive_is_a_config_error(tmp_path: Path):
    good = tar_bundle(tmp_path / "good.tgz", [("app/data.bin", os.urandom(300_000), None)])
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:50_000])
    archive = tmp_path / "deployment-archive"
    with pytest.raises(ConfigError, match=r"cannot be (read|unpacked)"):
        read_revision_appspec(Revision(bundle=cut))
        unpack_bundle(Revision(bundle=cut), archive)
    assert not archive.exists()
