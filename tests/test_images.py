"""Decoding once into a memory-mapped uint8 cache, reused and rebuilt when the folder changes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from dlcv.data import images as images_mod
from dlcv.data.images import load_image_stack
from dlcv.errors import DlcvError
from dlcv.files import decode_image, list_images


def test_stack_holds_every_image_in_name_order(p1_data):
    files = list_images(p1_data / "val_50")
    stack = load_image_stack(files)
    assert stack.shape == (16, 32, 32, 3) and stack.dtype == np.uint8
    assert np.array_equal(stack[3], np.asarray(Image.open(files[3]).convert("RGB")))


def test_second_load_maps_the_cache_and_decodes_nothing(p1_data, monkeypatch):
    files = list_images(p1_data / "val_50")
    first = np.array(load_image_stack(files))
    monkeypatch.setattr(images_mod, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    second = load_image_stack(files)
    assert isinstance(second, np.memmap)
    assert np.array_equal(first, second)


def test_cache_is_rebuilt_when_the_folder_changes(tmp_path, p1_data):
    folder = tmp_path / "imgs"
    shutil.copytree(p1_data / "val_50", folder)
    load_image_stack(list_images(folder))
    changed = folder / "0_12.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(changed)
    stack = load_image_stack(list_images(folder))
    assert stack[0].max() == 0
    cache_files = list((images_mod.default_cache_dir() / "images").glob("*.npy"))
    assert len(cache_files) == 1  # the stale cache of the old folder is gone


def test_truncated_png_is_an_error_naming_the_file(tmp_path, p1_data):
    data = (p1_data / "val_50" / "0_12.png").read_bytes()
    bad = tmp_path / "0_1.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlcvError, match=r"0_1\.png: not a readable image"):
        decode_image(bad)


def test_text_file_named_png_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "0_1.png"
    bad.write_text("hello")
    with pytest.raises(DlcvError, match=r"0_1\.png: not a readable image"):
        decode_image(bad)


def test_image_of_another_size_is_an_error_naming_it(tmp_path, p1_data):
    for index in (1, 3):
        shutil.copy(p1_data / "val_50" / "0_12.png", tmp_path / f"0_{index}.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "0_2.png")
    with pytest.raises(DlcvError, match=r"0_2\.png: image is 16x16, but 2 of the 3 images here are 32x32"):
        load_image_stack(list_images(tmp_path))
