"""Where the release assets (appspec/, packer/, etherpad/) live, installed or in a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from deployer.base.errors import ConfigError

ASSET_DIRS = ("appspec", "packer", "etherpad")


@cache
def assets_root() -> Path:
    """The folder holding appspec/, packer/ and etherpad/.

    A wheel carries them in ``deployer/_assets``; a source checkout (editable install) has
    them beside the package. Never the current directory.
    """
    package = Path(__file__).resolve().parents[1]  # the deployer package
    for root in (package / "_assets", package.parent):
        if all((root / name).is_dir() for name in ASSET_DIRS):
            return root
    raise ConfigError(f"release assets not found beside {package}",
                      hint="reinstall deployer (pip install .)")


def asset_path(*parts: str) -> Path:
    return assets_root().joinpath(*parts)
