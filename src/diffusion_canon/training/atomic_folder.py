"""Folders replaced or removed all at once, so that a kill at any moment leaves the old or the new state, never a mix.

- :func:`staged_folder`: the final pipeline is written into a staging folder beside ``output_dir``, then exchanged with
  it in one atomic rename (Linux ``renameat2(RENAME_EXCHANGE)``). Entries of the old folder that the new contents do
  not have (``checkpoint-*``, logs) are hard-linked into the staging folder first, so nothing is copied and nothing
  is lost. Where the exchange is not available, two renames are used and :func:`recover` undoes a kill between them
  on the next run.
- :func:`remove_folder`: renamed to a hidden name first (one atomic step), then deleted; a kill during the deletion
  leaves a hidden leftover, never a half-deleted folder under a valid name (``checkpoint-<step>``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _hidden(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{suffix}")


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False when the system cannot (not Linux, or the file system
    refuses), in which case nothing was changed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def recover(target: str | Path) -> None:
    """Undo what a kill left behind around ``target``: a stale staging folder, a half-deleted hidden folder, or (the
    two-rename fallback) the old folder moved aside with no new one in its place."""
    target = Path(target)
    old = _hidden(target, "old")
    if old.exists() and not target.exists():
        os.rename(old, target)
    for leftover in (_hidden(target, "staging"), old):
        shutil.rmtree(leftover, ignore_errors=True)


def _link_tree(source: Path, destination: Path) -> None:
    """Hard-link ``source`` (a file or a folder tree) to ``destination``; copy where links are refused."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, destination, copy_function=link, symlinks=True)
    else:
        link(str(source), str(destination))


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to write the new contents into; on a normal exit it replaces
    ``target`` at once (see the module docstring). On an exception ``target`` is left as it was."""
    target = Path(target)
    recover(target)
    staging = _hidden(target, "staging")
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not target.exists():
        os.rename(staging, target)
        return
    for entry in target.iterdir():  # what the new contents do not replace (checkpoints, logs) stays
        if not (staging / entry.name).exists():
            _link_tree(entry, staging / entry.name)
    if exchange(staging, target):
        shutil.rmtree(staging)  # now the old contents
        return
    old = _hidden(target, "old")
    os.rename(target, old)  # a kill here leaves target missing: recover() puts the old folder back
    os.rename(staging, target)
    shutil.rmtree(old)


def remove_folder(folder: str | Path) -> None:
    """Delete ``folder`` so that no kill leaves part of it under its own name."""
    folder = Path(folder)
    doomed = _hidden(folder, "deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.rename(folder, doomed)
    shutil.rmtree(doomed)
