import os

import pytest

from facegan.files import atomic_write, atomic_write_text


def test_atomic_write_permissions_and_no_leftovers(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_failure_leaves_nothing(tmp_path):
    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []
