"""The deployer's error tree and exit codes.

Every error a user can meet derives from :class:`DeployerError`. Adapters (boto3, the
packer binary, the local cloud, YAML/HCL readers) catch their libraries' exceptions at the
boundary and raise one of these, chaining the original, so that the CLI can print one line
that says what to fix and exit with a documented code::

    DeployerError                      exit 1
    ├── UsageError                     exit 2   bad flag, bad URL, unknown strategy
    ├── ConfigError                    exit 1   a template, appspec or Packer file is wrong
    │   └── UnsupportedProperty        exit 1   the local cloud cannot honour a property
    ├── SourceError                    exit 1   a release cannot be fetched
    ├── CloudError                     exit 1   a provider call failed
    │   └── NotFound                   exit 1
    ├── StateError                     exit 1   the environment is not in a state for this
    │   └── LockedError                exit 1   another run holds the environment
    └── RolloutFailed                  exit 4   rolled back (after RollbackFailed: exit 1)

Exit code 3 is not an error: the run completed but the poller saw downtime; 130 is an
interrupted run (Ctrl-C).
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Documented exit codes; scripts and CI jobs rely on them."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    DOWNTIME = 3
    ROLLED_BACK = 4
    DATA_LOST = 5  # completed, but an acknowledged edit was lost or a pad diverged
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class DeployerError(Exception):
    """Base of every error a user can meet. ``str(err)`` is the one line the CLI prints."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DeployerError):
    exit_status = ExitStatus.USAGE


class ConfigError(DeployerError):
    """A file the user controls is wrong. ``location`` names the file, line or field."""

    def __init__(self, message: str, *, location: str | None = None, hint: str | None = None):
        self.location = location
        super().__init__(f"{location}: {message}" if location else message, hint=hint)


class UnsupportedProperty(ConfigError):
    def __init__(self, resource: str, prop: str, *, location: str | None = None, why: str = ""):
        self.resource = resource
        self.prop = prop
        msg = f"resource {resource}: property {prop} is not supported by the local cloud"
        super().__init__(msg + (f" ({why})" if why else ""), location=location,
                         hint="remove it or run with --target aws")


class SourceError(DeployerError):
    """A release could not be fetched or installed."""


class CloudError(DeployerError):
    """A call to the cloud (AWS or the local cloud) failed."""


class NotFound(CloudError):
    pass


class StateError(DeployerError):
    """The environment is not in a state that allows the requested action."""


class LockedError(StateError):
    pass


class RolloutFailed(DeployerError):
    """The rollout failed and the previous release was restored."""

    exit_status = ExitStatus.ROLLED_BACK


class RollbackFailed(DeployerError):
    """The rollout failed and so did the rollback: the environment needs a human."""
