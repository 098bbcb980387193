"""Reading pickled torch files without running code, and telling why a file is refused.

``torch.load(weights_only=True)`` never runs code, but it reports a crafted pickle and a file that is no pickle at all
alike (``UnpicklingError``). A file written by ``torch.save`` is a zip archive; anything else is either a raw pickle,
scanned here (never executed) for the opcodes that import or call, or not a torch file at all.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

_CALLING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2",
                    "EXT4"}


class UnsafeFileError(ValueError):
    """The file holds objects other than tensors and plain containers: loading it could run code."""


class UnreadableFileError(ValueError):
    """The file is truncated, empty or not a torch file."""


def load_plain(path: str | Path, allowed_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with ``allowed_globals`` allowed besides torch's own;
    :class:`UnsafeFileError` or :class:`UnreadableFileError` (naming nothing: callers add the file's role)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # not torch.save's archive: torch would unpickle it the legacy way
        if _pickle_calls_code(path):
            raise UnsafeFileError("a raw pickle that imports or calls objects")
        raise UnreadableFileError("not a torch.save archive" if path.stat().st_size else "empty")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # the weights-only unpickler met a global or an opcode it refuses
        raise UnsafeFileError((str(error).strip().splitlines() or [""])[0][:200]) from None
    except Exception as error:  # a truncated archive and the like
        raise UnreadableFileError(f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}") \
            from None


def _pickle_calls_code(path: Path) -> bool:
    """Whether a raw pickle stream imports or calls anything (scanned, never executed)."""
    try:
        with open(path, "rb") as f:
            return any(op.name in _CALLING_OPCODES for op, _, _ in pickletools.genops(f))
    except Exception:  # not a pickle stream at all
        return False
