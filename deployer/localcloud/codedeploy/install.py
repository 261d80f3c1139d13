"""What DownloadBundle and Install do to an instance's disk: the revision, its bundle, Install.

The bundle is checked before anything is unpacked: an archive entry or a symlink that leads
out of the revision is a ConfigError, never a file written elsewhere; so is a bundle bigger
than :data:`MAX_BUNDLE_BYTES` or with more than :data:`MAX_BUNDLE_ENTRIES` entries (an
archive bomb fills the instance's disk before any hook runs). Links are checked twice: by
their text before unpacking, and on disk after it, where a chain of links that each look
harmless (``s -> .``, ``t -> s/../x``) can no longer hide where it leads. Install follows the
real agent's installer: the files the group's last install created are removed first (the
cleanup file lists them), then ``files`` are copied honouring ``file_exists_behavior``, then
``permissions`` are applied.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from deployer.appspec.reader import (
    AppSpec,
    FileExistsBehavior,
    ObjectType,
    OperatingSystem,
    Permission,
    load_appspec,
    parse_appspec,
)
from deployer.base.errors import ConfigError, NotFound
from deployer.cloud.port import Artifact

ARCHIVES_TO_RETAIN = 5  # the real agent keeps five deployment archives per group
APPSPEC_NAMES = ("appspec.yml", "appspec.yaml")
# Ceilings far above any real revision (Etherpad with its node_modules: about 20,000 files
# and 185 MB), low enough that a bomb is refused before it fills an instance's disk.
MAX_BUNDLE_BYTES = 4 * 1024**3
MAX_BUNDLE_ENTRIES = 200_000
MAX_APPSPEC_BYTES = 1024**2


class BundleType(str, Enum):
    DIRECTORY = "directory"
    ZIP = "zip"
    TAR = "tar"
    TGZ = "tgz"


class Revision(BaseModel):
    """A revision: a bundle on local disk, and where it lives in the artifact store if it does.

    S3 revisions carry the object's bucket/key/etag/version (they become BUNDLE_* for hooks);
    the artifact store hands over a local copy as ``bundle``. Objects in the store have no file
    extension, so their ``bundle_type`` is given or read from the first bytes.
    """

    bundle: Path
    bundle_type: BundleType | None = None
    artifact: Artifact | None = None

    @property
    def identity(self) -> str:
        """What makes two revisions the same one (revision health compares it)."""
        if self.artifact is not None:
            a = self.artifact
            return f"s3://{a.bucket}/{a.key}?versionId={a.version or ''}&etag={a.etag}"
        return f"file://{self.bundle}"

    def describe(self) -> str:
        if self.artifact is not None:
            return f"s3://{self.artifact.bucket}/{self.artifact.key}"
        return str(self.bundle)

    def resolved_type(self) -> BundleType:
        if self.bundle_type is not None:
            return self.bundle_type
        if self.bundle.is_dir():
            return BundleType.DIRECTORY
        name = self.bundle.name.lower()
        if name.endswith(".zip"):
            return BundleType.ZIP
        if name.endswith((".tgz", ".tar.gz")):
            return BundleType.TGZ
        if name.endswith(".tar"):
            return BundleType.TAR
        with open(self.bundle, "rb") as fh:
            magic = fh.read(4)
        if magic.startswith(b"PK\x03\x04"):
            return BundleType.ZIP
        if magic.startswith(b"\x1f\x8b"):
            return BundleType.TGZ
        if tarfile.is_tarfile(self.bundle):
            return BundleType.TAR
        raise ConfigError("the revision is neither a directory nor a zip, tar or tgz archive",
                          location=str(self.bundle), hint="bundle the revision as zip or tgz")


# -- the bundle ------------------------------------------------------------------------------

def read_revision_appspec(revision: Revision) -> AppSpec:
    """Validate a revision without unpacking it: its appspec and that no entry escapes it."""
    if not revision.bundle.exists():
        raise NotFound(f"revision bundle {revision.bundle} does not exist")
    kind = revision.resolved_type()
    if kind is BundleType.DIRECTORY:
        _check_symlinks(revision.bundle, revision.bundle)
        appspec = read_archive_appspec(revision.bundle)
    else:
        text, name = _appspec_in_archive(revision.bundle, kind)
        appspec = parse_appspec(text, source=f"{revision.bundle}!{name}")
    if appspec.os is OperatingSystem.WINDOWS:
        raise windows_unsupported(revision)
    return appspec


def windows_unsupported(revision: Revision) -> ConfigError:
    return ConfigError("the revision is for Windows instances (os: windows); the local cloud "
                       "runs Linux instances only", location=f"{revision.describe()}: os",
                       hint="use os: linux, or deploy it with --target aws")


def read_archive_appspec(archive: Path) -> AppSpec:
    for name in APPSPEC_NAMES:
        if (archive / name).is_file():
            return load_appspec(archive / name)
    raise ConfigError("the revision has no appspec.yml at its root", location=str(archive),
                      hint="put appspec.yml at the top of the bundle")


def _appspec_in_archive(bundle: Path, kind: BundleType) -> tuple[str, str]:
    names = _archive_entries(bundle, kind)
    for wanted in APPSPEC_NAMES:
        for name, _ in names:
            if name.removeprefix("./") == wanted:
                try:
                    if kind is BundleType.ZIP:
                        with zipfile.ZipFile(bundle) as zf:
                            _check_appspec_size(bundle, zf.getinfo(name).file_size)
                            return zf.read(name).decode("utf-8"), wanted
                    with tarfile.open(bundle, "r:*") as tf:
                        info = tf.getmember(name)
                        _check_appspec_size(bundle, info.size)
                        member = tf.extractfile(info) if info.isfile() else None
                        if member is None:
                            raise ConfigError(f"{wanted} in the bundle is not a regular file",
                                              location=str(bundle),
                                              hint="put the appspec.yml file itself in the "
                                                   "bundle, not a link")
                        return member.read().decode("utf-8"), wanted
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{wanted} is not UTF-8 text", location=str(bundle),
                                      hint="save appspec.yml as UTF-8") from exc
                except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError,
                        KeyError) as exc:
                    raise ConfigError(f"cannot read {wanted} from the revision archive: {exc}",
                                      location=str(bundle)) from exc
    raise ConfigError("the revision has no appspec.yml at its root", location=str(bundle),
                      hint="put appspec.yml at the top of the bundle")


def _check_appspec_size(bundle: Path, size: int) -> None:
    if size > MAX_APPSPEC_BYTES:
        raise ConfigError(f"appspec.yml in the bundle is {size:,} bytes, more than "
                          f"{MAX_APPSPEC_BYTES:,}", location=str(bundle),
                          hint="an appspec.yml is a short file; rebuild the bundle")


class _Budget:
    """What unpacking a bundle may use: bytes and entries, both capped."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle
        self.bytes = 0
        self.entries = 0

    def entry(self, size: int = 0) -> None:
        self.entries += 1
        self.add(size)
        if self.entries > MAX_BUNDLE_ENTRIES:
            raise ConfigError(f"the revision has more than {MAX_BUNDLE_ENTRIES:,} entries",
                              location=str(self.bundle),
                              hint="bundle only what the revision installs")

    def add(self, size: int) -> None:
        self.bytes += max(0, size)
        if self.bytes > MAX_BUNDLE_BYTES:
            raise ConfigError(f"the revision unpacks to more than {MAX_BUNDLE_BYTES:,} bytes",
                              location=str(self.bundle),
                              hint="bundle only what the revision installs (is it an archive "
                                   "bomb?)")


def _archive_entries(bundle: Path, kind: BundleType) -> list[tuple[str, str | None]]:
    """(name, symlink target or None) for every entry, refusing any that escapes the bundle
    and a bundle over the size or entry limits (by the sizes its entries declare)."""
    entries: list[tuple[str, str | None]] = []
    budget = _Budget(bundle)
    try:
        if kind is BundleType.ZIP:
            with zipfile.ZipFile(bundle) as zf:
                for info in zf.infolist():
                    budget.entry(info.file_size)
                    link = None
                    if stat.S_ISLNK(info.external_attr >> 16):
                        if info.file_size > 4096:
                            raise ConfigError(f"bundle entry {info.filename!r} is a link with "
                                              f"a {info.file_size}-byte target",
                                              location=str(bundle))
                        link = zf.read(info).decode("utf-8", "replace")
                    entries.append((info.filename, link))
        else:
            with tarfile.open(bundle, "r:*") as tf:
                for member in tf.getmembers():
                    budget.entry(member.size if member.isfile() else 0)
                    if member.isdev():
                        raise ConfigError(f"bundle entry {member.name!r} is a device file",
                                          location=str(bundle),
                                          hint="bundle regular files, directories and links")
                    if member.islnk():
                        # A hard link names another entry of the archive, from its root.
                        _check_entry(bundle, member.linkname, None)
                    entries.append((member.name, member.linkname if member.issym() else None))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ConfigError(f"the revision archive cannot be read: {exc}",
                          location=str(bundle)) from exc
    for name, link in entries:
        _check_entry(bundle, name, link)
    return entries


def _check_entry(bundle: Path, name: str, link: str | None) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError(f"bundle entry {name!r} points outside the bundle",
                          location=str(bundle), hint="rebuild the bundle with relative paths")
    if link is not None:
        target = PurePosixPath(link)
        resolved = os.path.normpath(str(path.parent / target))
        if target.is_absolute() or resolved == ".." or resolved.startswith("../"):
            raise ConfigError(f"bundle entry {name!r} is a link to {link!r}, outside the bundle",
                              location=str(bundle),
                              hint="make links relative and inside the revision")


def _check_symlinks(tree: Path, bundle: Path, budget: _Budget | None = None) -> None:
    """Every link in ``tree`` checked by its text, then by where it really leads."""
    root = tree.resolve()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if budget is not None:
                budget.entry(full.lstat().st_size if name in filenames and
                             not full.is_symlink() else 0)
            if full.is_symlink():
                relative = full.relative_to(tree).as_posix()
                _check_entry(bundle, relative, os.readlink(full))
                _check_resolved(bundle, root, full, relative)


def _check_resolved(bundle: Path, root: Path, path: Path, name: str) -> None:
    """``path`` (a link, or a file about to be written) must really lead inside ``root``."""
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"bundle entry {name!r} leads to {resolved}, outside the bundle "
                          "(through a chain of links)", location=str(bundle),
                          hint="make links point at files inside the revision")


def unpack_bundle(revision: Revision, archive: Path) -> None:
    """Put the revision's files in ``archive`` (the deployment-archive directory)."""
    if not revision.bundle.exists():
        raise NotFound(f"revision bundle {revision.bundle} does not exist")
    kind = revision.resolved_type()
    try:
        if kind is BundleType.DIRECTORY:
            _check_symlinks(revision.bundle, revision.bundle, _Budget(revision.bundle))
            shutil.copytree(revision.bundle, archive, symlinks=True)
        else:
            _archive_entries(revision.bundle, kind)
            archive.mkdir(parents=True)
            if kind is BundleType.ZIP:
                _extract_zip(revision.bundle, archive)
            else:
                _extract_tar(revision.bundle, archive)
        # On disk now: where every link really leads, whatever its text said.
        _check_symlinks(archive, revision.bundle)
    except BaseException:
        shutil.rmtree(archive, ignore_errors=True)  # nothing half-unpacked is left to run
        raise


def _extract_tar(bundle: Path, archive: Path) -> None:
    with tarfile.open(bundle, "r:*") as tf:
        try:
            tf.extractall(archive, filter="data")
        except tarfile.FilterError as exc:
            raise ConfigError(f"bundle entry refused: {exc}", location=str(bundle),
                              hint="rebuild the bundle with relative paths") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ConfigError(f"the revision archive cannot be unpacked: {exc}",
                              location=str(bundle)) from exc


def _extract_zip(bundle: Path, archive: Path) -> None:
    root = archive.resolve()
    budget = _Budget(bundle)
    try:
        with zipfile.ZipFile(bundle) as zf:
            for info in zf.infolist():
                target = archive / info.filename
                mode = info.external_attr >> 16
                budget.entry()
                # The directory it goes in must really be inside (no link leads out of it).
                _check_resolved(bundle, root, target.parent, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(target):
                    raise ConfigError(f"bundle entry {info.filename!r} is in the archive twice",
                                      location=str(bundle), hint="rebuild the bundle")
                if stat.S_ISLNK(mode):
                    os.symlink(zf.read(info).decode("utf-8", "replace"), target)
                    _check_resolved(bundle, root, target, info.filename)
                    continue
                with zf.open(info) as src, open(target, "xb") as dst:
                    # Counted as written: the sizes an archive declares can lie.
                    while chunk := src.read(1024 * 1024):
                        budget.add(len(chunk))
                        dst.write(chunk)
                if mode & 0o777:
                    target.chmod(mode & 0o777)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ConfigError(f"the revision archive cannot be unpacked: {exc}",
                          location=str(bundle)) from exc


def cleanup_old_archives(group_dir: Path, last_success: Path | None, *, keep_also: Path) -> None:
    """Keep the newest deployment directories of a group, never the last successful one."""
    if not group_dir.is_dir():
        return
    entries = [p for p in group_dir.iterdir() if p.is_dir() and p != keep_also]
    extra = len(entries) + 1 - ARCHIVES_TO_RETAIN
    if extra <= 0:
        return
    candidates = sorted((p for p in entries if p != last_success), key=lambda p: p.stat().st_mtime)
    for old in candidates[:extra]:
        shutil.rmtree(old, ignore_errors=True)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class InstallError(Exception):
    """Install cannot go on; the message says which file and what to change."""


def instance_path(root: Path, path: PurePosixPath | str) -> Path:
    """Where an absolute path on the instance lives on this machine."""
    return root / PurePosixPath(path).relative_to("/")


class Installer:
    """The Install event: undo the last install of the group, copy ``files``, set permissions.

    Same plan-then-execute shape as the real agent: every copy and mkdir is decided (and
    DISALLOW checked) before anything is written, and each path is recorded in the cleanup
    file before it is created, so an interrupted install is still undone next time.
    """

    def __init__(self, root: Path, instructions_dir: Path, archive: Path, *,
                 warn: Callable[[str], None], as_root: bool) -> None:
        self.instance_root = root
        self.instructions_dir = instructions_dir
        self.archive = archive
        self.warn = warn
        self.as_root = as_root
        self.root = root.resolve()
        self.copies: dict[PurePosixPath, Path] = {}  # destination -> source in the archive
        self.mkdirs: list[PurePosixPath] = []
        self.steps: list[tuple[str, PurePosixPath, Path | None]] = []
        self.safe_dirs: set[Path] = set()  # directories already known to stay in the root

    def install(self, group_id: str, appspec: AppSpec) -> None:
        instructions = self.instructions_dir
        instructions.mkdir(parents=True, exist_ok=True)
        cleanup_file = instructions / f"{group_id}-cleanup"
        if cleanup_file.exists():
            self.remove_previous(cleanup_file.read_text())
            cleanup_file.unlink()
        self.plan(appspec)
        permissions = self.plan_permissions(appspec)
        plan = [{"type": kind, "destination": str(dest),
                 **({"source": str(src)} if src is not None else {})}
                for kind, dest, src in self.steps]
        write_atomically(instructions / f"{group_id}-install.json",
                         json.dumps({"instructions": plan}, indent=1))
        with open(cleanup_file, "w", encoding="utf-8") as cleanup:
            for kind, dest, src in self.steps:
                cleanup.write(f"{dest}\n")
                cleanup.flush()
                self.execute(kind, dest, src, appspec.file_exists_behavior)
        for target, permission in permissions:
            self.apply_permission(target, permission)

    def host(self, path: PurePosixPath) -> Path:
        """The host path of an instance path, refusing one that leads out of the instance root."""
        host = instance_path(self.instance_root, path)
        unresolved = host if path == PurePosixPath("/") else host.parent
        if unresolved in self.safe_dirs:
            return host
        parent = unresolved.resolve()
        if parent == self.root or self.root in parent.parents:
            if parent.is_dir():  # a directory stays safe; a missing one is checked again
                self.safe_dirs.add(unresolved)
        else:
            raise ConfigError(f"destination {path} leads outside the instance root through a "
                              "symbolic link", location="appspec.yml: files",
                              hint="point the destination at a real directory")
        return host

    def remove_previous(self, cleanup_text: str) -> None:
        lines = cleanup_text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # a path that was being written when the last install stopped
        for line in reversed(lines):
            path = instance_path(self.instance_root, PurePosixPath(line.strip()))
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    pass  # someone put files there since; leave it, as the agent does

    # -- planning --------------------------------------------------------------------------
    def plan(self, appspec: AppSpec) -> None:
        for mapping in appspec.files:
            source = self.archive.joinpath(*mapping.source_parts)
            destination = PurePosixPath(mapping.destination)
            if not source.exists() and not source.is_symlink():
                raise InstallError(f"files: source {mapping.source!r} is not in the revision")
            if source.is_dir() and not source.is_symlink():
                self.missing_ancestors(destination)
                self.directory_copy(source, destination, appspec.file_exists_behavior)
            else:
                target = destination / source.name
                self.missing_ancestors(target)
                self.normal_copy(source, target, appspec.file_exists_behavior)

    def missing_ancestors(self, destination: PurePosixPath) -> None:
        missing: list[PurePosixPath] = []
        parent = destination.parent
        while parent != PurePosixPath("/") and not self.host(parent).exists():
            missing.insert(0, parent)
            parent = parent.parent
        for directory in missing:
            self.mkdir(directory)

    def directory_copy(self, source: Path, destination: PurePosixPath,
                       behavior: FileExistsBehavior) -> None:
        if not self.host(destination).is_dir():
            self.mkdir(destination)
        for entry in sorted(source.iterdir()):
            target = destination / entry.name
            if entry.is_dir() and not entry.is_symlink():
                self.directory_copy(entry, target, behavior)
            else:
                self.normal_copy(entry, target, behavior)

    def normal_copy(self, source: Path, destination: PurePosixPath,
                    behavior: FileExistsBehavior) -> None:
        if os.path.lexists(self.host(destination)):
            if behavior is FileExistsBehavior.DISALLOW:
                raise InstallError(
                    "The deployment failed because a specified file already exists at this "
                    f"location: {destination} (set file_exists_behavior: OVERWRITE or RETAIN "
                    "in appspec.yml, or remove the file)")
            if behavior is FileExistsBehavior.RETAIN:
                return
        self.copy(source, destination)

    def copy(self, source: Path, destination: PurePosixPath) -> None:
        if destination in self.copies:
            raise InstallError(f"appspec.yml: files: two sources ({self.copies[destination]} "
                               f"and {source}) go to the same destination {destination}; "
                               "remove one")
        if destination in self.mkdirs:
            raise InstallError(f"appspec.yml: files: {source} would replace the directory "
                               f"{destination} that another entry installs")
        self.copies[destination] = source
        self.steps.append(("copy", destination, source))

    def mkdir(self, destination: PurePosixPath) -> None:
        if destination in self.copies:
            raise InstallError(f"appspec.yml: files: {destination} is both a file and a "
                               "directory in the revision's destinations")
        if destination not in self.mkdirs:
            self.mkdirs.append(destination)
            self.steps.append(("mkdir", destination, None))

    def plan_permissions(self, appspec: AppSpec) -> list[tuple[PurePosixPath, Permission]]:
        targets: list[tuple[PurePosixPath, Permission]] = []
        seen: set[PurePosixPath] = set()
        for index, permission in enumerate(appspec.permissions):
            obj = PurePosixPath(permission.object)
            field = f"appspec.yml: permissions[{index}]"
            if obj in self.copies:
                if ObjectType.FILE not in permission.type:
                    continue
                if permission.pattern != "**" or permission.except_:
                    raise ConfigError(f"object {obj} is a file, so pattern and except do not "
                                      "apply to it", location=field,
                                      hint="remove pattern/except or point object at a "
                                           "directory")
                matches = [obj]
            elif obj in self.mkdirs or self.host(obj).is_dir():
                matches = []
                if ObjectType.FILE in permission.type:
                    matches += [p for p in self.copies if permission.matches(p)]
                if ObjectType.DIRECTORY in permission.type:
                    matches += [p for p in self.mkdirs if permission.matches(p)]
            else:
                continue
            for match in matches:
                if match in seen:
                    raise ConfigError(f"the permissions of {match} are set by more than one "
                                      "entry", location=field,
                                      hint="make the permissions entries not overlap")
                seen.add(match)
                targets.append((match, permission))
        return targets

    # -- executing -------------------------------------------------------------------------
    def execute(self, kind: str, destination: PurePosixPath, source: Path | None,
                behavior: FileExistsBehavior) -> None:
        host = self.host(destination)
        if kind == "mkdir":
            host.mkdir(exist_ok=False)
            return
        assert source is not None
        if os.path.lexists(host):
            # Only OVERWRITE gets here with an existing file (planning refused DISALLOW).
            if host.is_dir() and not host.is_symlink():
                raise InstallError(f"cannot overwrite directory {destination} with a file")
            host.unlink()
        if source.is_symlink():
            os.symlink(os.readlink(source), host)
        else:
            shutil.copy2(source, host)

    def apply_permission(self, target: PurePosixPath, permission: Permission) -> None:
        host = self.host(target)
        if permission.mode_bits is not None and not host.is_symlink():
            host.chmod(permission.mode_bits)
        if permission.owner is None and permission.group is None:
            return
        uid = _account_id("owner", permission.owner, lambda n: pwd.getpwnam(n).pw_uid, "user")
        gid = _account_id("group", permission.group, lambda n: grp.getgrnam(n).gr_gid, "group")
        try:
            os.lchown(host, uid, gid)
        except PermissionError:
            if self.as_root:
                raise
            # Without root the local agent cannot give files away; the real one runs as root.
            self.warn(f"permissions: cannot chown {target} to "
                      f"{permission.owner}:{permission.group} without root; left as is\n")


def _account_id(field: str, name: str | None, lookup, kind: str) -> int:
    """The numeric id of an appspec permissions owner or group (-1: leave it as is)."""
    if name is None:
        return -1
    try:
        return lookup(name)
    except KeyError:
        raise ConfigError(f"{field} {name!r} does not exist on this machine",
                          location="appspec.yml: permissions",
                          hint=f"create the {kind} or change {field}") from None
