"""Include/exclude filters in gitignore syntax."""

from __future__ import annotations

from collections.abc import Sequence


class PathFilter:
    """Excludes the paths that match any gitignore-style pattern."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._spec = None
        if patterns:
            # Imported here: pathspec costs more start-up time than a small no-op session.
            import pathspec

            self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    def excluded(self, path: str) -> bool:
        return self._spec is not None and self._spec.match_file(path)

    def __bool__(self) -> bool:
        return self._spec is not None
