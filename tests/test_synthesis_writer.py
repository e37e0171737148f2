"""The JPEG writer pool: exact bytes and records, a bounded queue, errors handed back, whole files only."""
from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest


def test_uint8_mapping_and_atomic_jpeg_writer(tmp_path):
    import torch
    from PIL import Image

    from reid_aug.synthesis.writer import JpegWriterPool, tensor_to_uint8

    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    u = tensor_to_uint8(x)
    assert u.shape == (1, 1, 5, 3) and u[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 16, 8, 3), dtype=np.uint8)
    pool = JpegWriterPool(workers=2, quality=90, max_pending=2)
    for i, im in enumerate(imgs):
        pool.submit(tmp_path / f"{i}.jpg", im)
    recs = pool.close()
    assert sorted(recs) == [f"{i}.jpg" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(recs)               # no temp files left
    assert Image.open(tmp_path / "0.jpg").size == (8, 16)


def test_records_are_the_bytes_on_disk_and_the_jpeg_of_the_image(tmp_path):
    from PIL import Image

    from reid_aug.synthesis.writer import JpegWriterPool, encode_jpeg

    y, x = np.mgrid[0:32, 0:16]
    smooth = np.stack([y * 6, x * 12, np.full_like(y, 128)], axis=-1)                   # (32, 16, 3)
    images = [(smooth + 20 * i).astype(np.uint8) for i in range(4)]
    with JpegWriterPool(workers=3, quality=100) as pool:
        for i in range(4):
            pool.submit(tmp_path / f"{i}.jpg", images[i])
        recs = pool.close()
    for i in range(4):
        data = (tmp_path / f"{i}.jpg").read_bytes()
        assert data == encode_jpeg(images[i], 100)                 # same bytes whatever thread
        assert recs[f"{i}.jpg"].sha256 == hashlib.sha256(data).hexdigest() and recs[f"{i}.jpg"].bytes == len(data)
        back = np.asarray(Image.open(tmp_path / f"{i}.jpg").convert("RGB")).astype(int)
        assert np.abs(back - images[i]).mean() < 3                # quality 100: near-lossless
    assert pool.busy_seconds > 0


def test_submit_blocks_once_max_pending_images_are_queued(tmp_path, monkeypatch):
    import reid_aug.synthesis.writer as writer

    gate = threading.Event()
    real = writer.encode_jpeg

    def slow_encode(image, quality=95):
        gate.wait(10)
        return real(image, quality)

    monkeypatch.setattr(writer, "encode_jpeg", slow_encode)
    pool = writer.JpegWriterPool(workers=1, quality=90, max_pending=2)
    img = np.zeros((8, 4, 3), np.uint8)
    returned = []

    def producer():
        for i in range(4):
            pool.submit(tmp_path / f"{i}.jpg", img)
            returned.append(i)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.5)
    assert returned == [0, 1]                      # the third submit waits for a free slot
    gate.set()
    t.join(10)
    assert returned == [0, 1, 2, 3]
    assert sorted(pool.close()) == [f"{i}.jpg" for i in range(4)]
    assert pool.wait_seconds >= 0.3


def test_a_failed_write_is_raised_by_close_and_leaves_no_file(tmp_path):
    from reid_aug.synthesis.writer import JpegWriterPool

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a folder is expected")
    pool = JpegWriterPool(workers=2, quality=90)
    pool.submit(tmp_path / "ok.jpg", np.zeros((8, 4, 3), np.uint8))
    pool.submit(blocker / "x.jpg", np.zeros((8, 4, 3), np.uint8))
    with pytest.raises(OSError):
        pool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir", "ok.jpg"]
    with pytest.raises(OSError):                   # a later submit reports it too
        pool.submit(tmp_path / "late.jpg", np.zeros((8, 4, 3), np.uint8))


def test_an_exception_in_the_caller_drops_queued_images_and_leaves_whole_files(tmp_path, monkeypatch):
    from PIL import Image

    import reid_aug.synthesis.writer as writer

    real = writer.encode_jpeg

    def slow_encode(image, quality=95):
        time.sleep(0.05)
        return real(image, quality)

    monkeypatch.setattr(writer, "encode_jpeg", slow_encode)
    img = np.full((16, 8, 3), 200, np.uint8)
    with pytest.raises(KeyboardInterrupt):
        with writer.JpegWriterPool(workers=1, quality=90, max_pending=64) as pool:
            for i in range(40):
                pool.submit(tmp_path / f"{i:02d}.jpg", img)
            raise KeyboardInterrupt
    files = sorted(tmp_path.iterdir())
    assert len(files) < 40                                                        # queued ones were dropped
    assert all(not p.name.startswith(".") for p in files)                         # no temp file left
    for p in files:
        Image.open(p).load()                                                      # each file is a whole JPEG
