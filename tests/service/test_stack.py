"""`jobsvc run`'s dev callback secret: made once and kept, made again when a write that
was cut short left the file empty (never read as an empty secret)."""

import stat
from pathlib import Path

import pytest

from service import stack


@pytest.mark.parametrize("left", ["", "\n", "short\n"])
def test_a_missing_empty_or_short_secret_is_made_anew(tmp_path: Path, left: str) -> None:
    path = stack.dev_callback_secret(tmp_path / "data")  # made in a directory made for it
    first = path.read_text()
    assert len(first.strip()) >= stack.SECRET_MIN_CHARS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stack.dev_callback_secret(tmp_path / "data").read_text() == first  # kept

    path.write_text(left)
    again = stack.dev_callback_secret(tmp_path / "data").read_text()
    assert len(again.strip()) >= stack.SECRET_MIN_CHARS and again != first
    assert [p.name for p in path.parent.iterdir()] == ["callback-secret"]  # no temp file left
