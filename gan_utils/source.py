"""Show the real source of a `gan_utils` object in a notebook, so chapters never keep a copy.

Introduced in chapter 1. The chapter calls ``show_source(losses.non_saturating_generator_loss)``
and the reader sees exactly the code the library runs, with its file and line numbers.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import gan_utils

_PACKAGE_ROOT = Path(gan_utils.__file__).resolve().parent.parent


class SourceListing:
    """A block of library source that renders as a highlighted code block in Jupyter and the book."""

    def __init__(self, code: str, location: str) -> None:
        self.code = code
        self.location = location

    def _repr_markdown_(self) -> str:
        return f"`{self.location}`\n\n```python\n{self.code}\n```\n"

    def __str__(self) -> str:
        return f"# {self.location}\n{self.code}"

    def __repr__(self) -> str:
        return str(self)


def show_source(obj: object) -> SourceListing:
    """Return the source of a function, class or module of `gan_utils` for display.

    Args:
        obj: e.g. ``gan_utils.losses.minimax_discriminator_loss`` or ``gan_utils.losses``.

    Returns:
        A `SourceListing`; as the last expression of a cell it shows as highlighted code headed by
        its file and line range.
    """
    module = inspect.getmodule(obj)
    if module is None or not (module.__name__ == "gan_utils" or module.__name__.startswith("gan_utils.")):
        raise ValueError(
            f"show_source displays gan_utils code only; {obj!r} comes from "
            f"{getattr(module, '__name__', 'an unknown module')}. Use inspect.getsource for other code."
        )
    lines, first_line = inspect.getsourcelines(obj)
    first_line = max(first_line, 1)
    path = Path(inspect.getsourcefile(obj)).resolve().relative_to(_PACKAGE_ROOT).as_posix()
    location = f"{path}, lines {first_line}-{first_line + len(lines) - 1}"
    return SourceListing("".join(lines).rstrip("\n"), location)
