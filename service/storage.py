"""Where files live: artifacts a job made and uploads a client sent, under
JOBS_ARTIFACTS_DIR, shared by the API and the workers.

    <artifacts_dir>/jobs/<job id>/<name>            a job's artifacts
    <artifacts_dir>/uploads/<hash of client>/<id>   a client's uploads

Folders are named by ids and hashes, never by client input; file names are plain names
(`is_safe_name`). Every file is written whole: to a hidden temporary name first, then
renamed, so a reader never sees half a file.
"""

import hashlib
import re
from pathlib import Path
from uuid import UUID

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_safe_name(name: str) -> bool:
    """A plain file name: no path separators, no leading dot."""
    return bool(_SAFE_NAME.match(name))


def artifact_dir(root: Path, job_id: UUID) -> Path:
    return root / "jobs" / str(job_id)


def uploads_root(root: Path) -> Path:
    return root / "uploads"


def uploads_dir(root: Path, owner: str) -> Path:
    """A client's uploads; the folder is named by a hash of the client, never by input."""
    return uploads_root(root) / hashlib.sha256(owner.encode()).hexdigest()[:24]


def write_whole(path: Path, data: bytes) -> None:
    """Write `path` so that readers see the old file or the new one, never a part."""
    with WholeFile(path) as out:
        out.write(data)
        out.keep()


class WholeFile:
    """A file written piece by piece that readers see whole or not at all: `write` the
    pieces, then `keep()` renames it into place; a file never kept is removed on exit."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        self._out = self._partial.open("wb")

    def write(self, data: bytes) -> None:
        self._out.write(data)

    def keep(self) -> None:
        self._out.close()
        self._partial.replace(self.path)

    def __enter__(self) -> "WholeFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()
        self._partial.unlink(missing_ok=True)


def bytes_used(folder: Path) -> int:
    """The size of the files in `folder` (0 if it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
