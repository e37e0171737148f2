"""reid_aug.utils.io (atomic writes, hashes) and reid_aug.utils.images (grids, PNGs)."""
import hashlib
import os
import threading

import numpy as np
import pytest

from reid_aug.utils.io import (atomic_create_text, atomic_path, atomic_write_text, sha256_file, sha256_lines)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_sha256_lines_known_answer_and_order():
    assert sha256_lines(["a,b", "c,d"]) == hashlib.sha256(b"a,b\nc,d\n").hexdigest()
    assert sha256_lines(["a,b", "c,d"]) != sha256_lines(["c,d", "a,b"])


def test_sha256_file_reads_in_chunks(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    (tmp_path / "b").write_bytes(data)
    assert sha256_file(tmp_path / "b", chunk=1024) == hashlib.sha256(data).hexdigest()


def test_atomic_files_get_umask_mode(tmp_path):
    atomic_write_text(tmp_path / "g.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert atomic_create_text(tmp_path / "h.txt", "y")
    assert (tmp_path / "h.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_create_first_writer_wins_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "desc.json"
    results = []
    barrier = threading.Barrier(8)

    def write(i):
        barrier.wait()
        results.append((i, atomic_create_text(target, f"writer {i}")))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, ok in results if ok]
    assert len(winners) == 1
    assert target.read_text() == f"writer {winners[0]}"
    assert not atomic_create_text(target, "late")
    assert target.read_text() == f"writer {winners[0]}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["desc.json"]


def test_image_grid_layout_and_png_round_trip(tmp_path):
    from PIL import Image

    from reid_aug.utils.images import image_grid, save_png

    a = np.zeros((2, 3, 4, 3), np.uint8)
    a[1] = 200
    b = np.ones((2, 3, 4, 3), np.float32) * 0.5        # float in [0, 1] -> 128
    grid = image_grid([a, b], pad=1, fill=7)
    assert grid.shape == (2 * 4 + 3, 2 * 3 + 3, 3)
    assert (grid[1:5, 1:4] == 0).all() and (grid[6:10, 1:4] == 200).all()
    assert (grid[1:5, 5:8] == 128).all()
    assert (grid[0] == 7).all() and (grid[:, 4] == 7).all()
    save_png(grid, tmp_path / "g.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "g.png")), grid)
    with pytest.raises(ValueError, match="column 1"):
        image_grid([a, b[:1]])
