"""The Etherpad application profile: where releases come from and how they are installed.

The machine-side half lives in the asset folder ``etherpad/`` (shipped to AWS, executed by
the local cloud): ``bin/install-etherpad.sh``, ``bin/start-etherpad.sh``,
``bin/stop-etherpad.sh``, ``bin/wait-healthy.sh``, ``settings.json.template`` and the
version plugin ``plugin/ep_deployer_release``. This package chooses and verifies sources
and drives those scripts.
"""

from deployer.etherpad.install import (
    InstalledRelease,
    ReleaseBundle,
    bundle_release,
    install_release,
    read_install,
    script_path,
)
from deployer.etherpad.sources import (
    FetchedRelease,
    ReleaseSource,
    SourceKind,
    resolve_source,
)

__all__ = [
    "FetchedRelease",
    "InstalledRelease",
    "ReleaseBundle",
    "ReleaseSource",
    "SourceKind",
    "bundle_release",
    "install_release",
    "read_install",
    "resolve_source",
    "script_path",
]
