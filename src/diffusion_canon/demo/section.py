"""One block of the demo gallery: what a section provider returns and the page renders."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DemoSection"]


@dataclass
class DemoSection:
    """One block of the gallery.

    ``images`` are ``(file name relative to the output folder, caption)``; ``table`` is a list of rows, the first
    being the header.
    """

    title: str
    description: str
    images: list[tuple[str, str]] = field(default_factory=list)
    table: list[list[str]] | None = None
