"""The p1 format: labels from file names or a CSV, and the refusals that protect the user."""

from __future__ import annotations

import numpy as np
import pytest

from dlcv.data.p1 import label_from_filename, read_image_folder, stratified_holdout
from dlcv.errors import DlcvError


def test_label_is_the_number_before_the_underscore():
    assert label_from_filename("val_50/12_345.png") == 12


def test_file_name_without_class_prefix_is_an_error_naming_it():
    with pytest.raises(DlcvError, match=r"cat\.png: the file name has no class prefix"):
        label_from_filename("cat.png")


def test_folder_images_are_sorted_by_name_with_labels(p1_data):
    images = read_image_folder(p1_data / "val_50")
    assert images.names == sorted(images.names)
    assert list(images.labels) == [int(n.split("_")[0]) for n in images.names]


def test_labels_come_from_the_csv_when_given(p1_data):
    images = read_image_folder(p1_data / "val_50", p1_data / "val_gt.csv")
    assert len(images.files) == 16
    assert list(images.labels) == [int(n.split("_")[0]) for n in images.names]


def test_csv_missing_label_column_is_refused(tmp_path, p1_data):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,class\n0_12.png,0\n")
    with pytest.raises(DlcvError, match=r"bad\.csv: missing column\(s\) label"):
        read_image_folder(p1_data / "val_50", bad)


def test_csv_unknown_file_name_is_refused(tmp_path, p1_data):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label\n0_999.png,0\n")
    with pytest.raises(DlcvError, match=r"bad\.csv:2: unknown file name '0_999\.png'"):
        read_image_folder(p1_data / "val_50", bad)


@pytest.mark.parametrize("name", ["../train_50/0_0.png", "/etc/passwd", "sub/../../x.png", "C:\\x.png"])
def test_csv_names_outside_the_folder_are_refused(tmp_path, p1_data, name):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"filename,label\n{name},0\n")
    with pytest.raises(DlcvError, match="points outside the image folder"):
        read_image_folder(p1_data / "val_50", bad)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DlcvError, match="holds no images"):
        read_image_folder(tmp_path)


def test_holdout_keeps_the_share_of_every_class_and_is_seeded():
    labels = np.repeat(np.arange(5), 20)
    train, hold = stratified_holdout(labels, 0.1, seed=3)
    assert len(hold) == 10 and np.bincount(labels[hold]).tolist() == [2] * 5
    assert not set(train) & set(hold) and len(train) + len(hold) == 100
    again_train, again_hold = stratified_holdout(labels, 0.1, seed=3)
    assert np.array_equal(hold, again_hold) and np.array_equal(train, again_train)
