from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.base.errors import ConfigError
from deployer.cfn.templates import StackModel, load_stack

FIXTURES = Path(__file__).parent / "fixtures"


class Templates:
    """Writes template text to a temporary file and loads it as stack ``test``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def write(self, text: str, suffix: str = ".yaml") -> Path:
        self.count += 1
        path = self.folder / f"template{self.count}{suffix}"
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def load(self, text: str, parameters: dict[str, str] | None = None, **options) -> StackModel:
        options.setdefault("stack_name", "test")
        return load_stack(self.write(text), parameters or {}, **options)

    def error(self, text: str, parameters: dict[str, str] | None = None,
              error: type[ConfigError] = ConfigError, **options) -> ConfigError:
        """The error loading ``text`` raises (it must raise ``error``)."""
        with pytest.raises(error) as caught:
            self.load(text, parameters, **options)
        return caught.value


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of ``text`` (dedented as written) holding ``fragment``."""
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    hits = [number for number, line in enumerate(lines, 1) if fragment in line]
    assert len(hits) >= occurrence, f"{fragment!r} not in template"
    return hits[occurrence - 1]


def assert_at(error: ConfigError, text: str, fragment: str, occurrence: int = 1) -> None:
    """The error's location is the line of ``text`` holding ``fragment``."""
    assert error.location is not None
    assert error.location.rsplit(":", 1)[1] == str(line_of(text, fragment, occurrence)), \
        f"{error} is not at {fragment!r}"


@pytest.fixture
def templates(tmp_path: Path) -> Templates:
    return Templates(tmp_path)
