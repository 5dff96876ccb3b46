"""wsolbench.atomic: the one atomic-write helper behind every file wsolbench writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from wsolbench.atomic import atomic_write, atomic_write_text


def test_text_round_trip_keeps_line_endings(tmp_path) -> None:
    target = atomic_write_text(tmp_path / "sub" / "a.txt", "α,1\nb,2\r\n")
    assert target == tmp_path / "sub" / "a.txt"
    assert target.read_bytes() == "α,1\nb,2\r\n".encode()


def test_binary_writer_round_trip(tmp_path) -> None:
    arrays = {"maps": np.arange(6, dtype=np.float32).reshape(2, 3)}
    atomic_write(tmp_path / "s.npz", lambda handle: np.savez_compressed(handle, **arrays))
    with np.load(tmp_path / "s.npz") as loaded:
        np.testing.assert_array_equal(loaded["maps"], arrays["maps"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path) -> None:
    atomic_write_text(tmp_path / "a.txt", "old\n")

    def fail(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(tmp_path / "a.txt", fail)
    assert (tmp_path / "a.txt").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_binary_files_honour_the_umask(tmp_path, umask, mode) -> None:
    previous = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "b.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(mode)
