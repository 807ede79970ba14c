"""Learned representations: snapshot files, neighbour statistics, aligned layouts and the figures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

from dlcv.data.features import load_features, load_run_snapshots, save_features
from dlcv.errors import DlcvError
from dlcv.metrics.embedding import knn_accuracy, silhouette
from dlcv.recipes import RecipeError, snapshot_epochs
from dlcv.viz.layouts import TSNEOptions, align_to, pca_series, tsne_series


def clusters(n_classes=5, per_class=60, dims=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dims)) * 3
    labels = np.repeat(np.arange(n_classes), per_class)
    return (centres[labels] + rng.normal(scale=spread, size=(len(labels), dims))).astype(np.float32), labels


def test_feature_files_round_trip(tmp_path):
    x, y = clusters()
    names = [f"{c}_{i}.png" for i, c in enumerate(y)]
    save_features(tmp_path / "f.npz", x, y, names, epoch=3)
    back = load_features(tmp_path / "f.npz")
    assert np.allclose(back.features, x, atol=2e-2) and np.array_equal(back.labels, y)
    assert back.filenames == names and back.epoch == 3


def test_feature_file_without_labels_is_refused(tmp_path):
    np.savez(tmp_path / "f.npz", features=np.zeros((5, 3)))
    with pytest.raises(DlcvError, match=r"f\.npz: no 'labels' array"):
        load_features(tmp_path / "f.npz")


def test_feature_file_with_mismatched_labels_is_refused(tmp_path):
    np.savez(tmp_path / "f.npz", features=np.zeros((5, 3)), labels=np.zeros(4, int))
    with pytest.raises(DlcvError, match=r"'labels' has shape \(4,\), expected \(5,\)"):
        load_features(tmp_path / "f.npz")


def test_run_without_snapshots_is_refused(tmp_path):
    with pytest.raises(DlcvError, match="the run kept no embedding snapshots"):
        load_run_snapshots(tmp_path)


def test_snapshot_epochs_resolve_words_and_numbers():
    assert snapshot_epochs("first,middle,last", 10) == [1, 5, 10]
    assert snapshot_epochs("first,middle,last", 1) == [1]
    assert snapshot_epochs([2, "last"], 4) == [2, 4]
    assert snapshot_epochs("", 4) == []
    with pytest.raises(RecipeError, match="'12' is not first, middle, last or an epoch in 1..10"):
        snapshot_epochs("first,12", 10)


def test_knn_accuracy_is_one_on_separated_clusters_and_chance_on_shuffled_labels():
    x, y = clusters(n_classes=5, per_class=100)
    assert knn_accuracy(x, y, k=10) == 1.0
    shuffled = np.random.default_rng(1).permutation(y)
    assert 0.1 < knn_accuracy(x, shuffled, k=10) < 0.3  # chance is 0.2


def test_knn_accuracy_leaves_the_point_itself_out():
    # Two points per class far apart from each other, each alone: its own vote must not count.
    x = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    assert knn_accuracy(x, np.array([0, 1, 2, 3]), k=1) == 0.0


def test_silhouette_near_one_on_separated_clusters_and_near_zero_on_shuffled_labels():
    x, y = clusters()
    assert silhouette(x, y) > 0.9
    assert abs(silhouette(x, np.random.default_rng(2).permutation(y))) < 0.1


def test_silhouette_matches_scikit_learn_including_a_class_of_one():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 16)), rng.integers(0, 6, 400)
    y[0] = 9  # a class with one point scores 0, as in scikit-learn
    expected = silhouette_score(x, y, metric="cosine")
    assert silhouette(x, y) == pytest.approx(expected, abs=1e-5)


def test_pca_panels_of_rotated_features_come_out_aligned():
    x, _ = clusters(dims=8)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(8, 8)))
    first, last = pca_series([x @ q, x])
    spread = np.abs(last).max()
    assert np.abs(first - last).max() < 1e-3 * spread


def test_procrustes_undoes_a_rotation_and_a_reflection():
    layout = np.random.default_rng(4).normal(size=(50, 2))
    turned = layout @ np.array([[0.0, 1.0], [1.0, 0.0]]) + 5  # reflect and shift
    assert np.allclose(align_to(turned, layout), layout, atol=1e-9)


def test_tsne_of_nearly_the_same_features_gives_nearly_the_same_layout():
    """Every class keeps its place from one layout to the next (within a tight cluster of noise the
    points' order is arbitrary, so the classes' centres are what alignment must keep)."""
    x, labels = clusters(n_classes=4, per_class=50)
    noisy = x + np.random.default_rng(5).normal(scale=0.01, size=x.shape).astype(np.float32)
    first, second = tsne_series([x, noisy], TSNEOptions(pca_components=0, threads=1))
    centres = [np.stack([lay[labels == c].mean(0) for c in range(4)]) for lay in (first, second)]
    between = min(np.linalg.norm(centres[0][i] - centres[0][j]) for i in range(4) for j in range(i + 1, 4))
    # Each class moves by far less than the distance to its nearest neighbour class.
    assert np.linalg.norm(centres[0] - centres[1], axis=1).max() < 0.25 * between


def test_training_keeps_snapshots_of_the_validation_images(trained_run):
    sets = load_run_snapshots(trained_run)
    assert [s.epoch for s in sets] == [1, 2]  # first, middle and last of two epochs
    assert all(s.features.shape == (16, 16) for s in sets)  # 16 images, dlcv_net's last width
    assert sets[0].filenames == sorted(sets[0].filenames)
    import json

    timed = json.loads((trained_run / "summary.json").read_text())["snapshot_seconds"]
    # one time per snapshot on disk: each file the run wrote, and no other
    assert set(timed) == {p.name for p in (trained_run / "embeddings").glob("epoch_*.npz")} == {
        "epoch_001.npz", "epoch_002.npz"}


def test_embed_plot_writes_panels_singles_metrics(capsys, trained_run, tmp_path, monkeypatch):
    from dlcv.viz import embedding

    figures = {}
    real_save = embedding.save_figure

    def keep(fig, stem, formats=("png", "pdf")):
        figures[stem.name] = (len([a for a in fig.axes if a.collections]), fig.legends)
        return real_save(fig, stem, formats)

    monkeypatch.setattr(embedding, "save_figure", keep)
    out = tmp_path / "figs"
    code, stdout, err = run_cli(capsys, "embed", "plot", trained_run, "--method", "pca,tsne", "--output", out)
    assert code == 0, err
    for stem in ("pca_panels", "tsne_panels", "pca_epoch_001", "pca_epoch_002", "tsne_epoch_002"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").exists()
    panels, legends = figures["tsne_panels"]
    assert panels == 2 and len(legends) == 1 and len(legends[0].get_texts()) == 4  # 4 classes
    assert (out / "embedding_metrics.png").exists()
    lines = (out / "embedding_metrics.csv").read_text().splitlines()
    assert lines[0] == "snapshot,epoch,points,dims,knn_acc,silhouette" and len(lines) == 3
    assert "epoch 2: 16 points x 16 dims  knn_acc" in stdout


def test_a_layout_that_fails_leaves_the_earlier_figures_as_they_were(capsys, tmp_path, monkeypatch):
    """Every layout is computed before any file is written: a failure midway leaves no folder of mixed figures."""
    from test_output_safety import folder_digest

    import dlcv.viz.snapshots

    x, y = clusters()
    save_features(tmp_path / "feats.npz", x, y)
    args = ("embed", "plot", tmp_path / "feats.npz", "--method", "pca,tsne", "--output", tmp_path / "figs")
    assert run_cli(capsys, *args)[0] == 0
    before = folder_digest(tmp_path / "figs")

    def fails(*_, **__):
        raise DlcvError("t-SNE failed")

    monkeypatch.setattr(dlcv.viz.snapshots, "tsne_series", fails)
    save_features(tmp_path / "feats.npz", x[::-1].copy(), y[::-1].copy())  # new features: new figures if any
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "t-SNE failed" in err
    assert folder_digest(tmp_path / "figs") == before


def test_embed_plot_on_a_feature_file(capsys, tmp_path):
    x, y = clusters()
    save_features(tmp_path / "feats.npz", x, y)
    code, stdout, err = run_cli(capsys, "embed", "plot", tmp_path / "feats.npz", "--method", "tsne",
                                "--output", tmp_path / "figs")
    assert code == 0, err
    assert (tmp_path / "figs" / "tsne_feats.png").exists() and "knn_acc 1.0000" in stdout


def test_embed_plot_bad_input_is_one_line_and_status_2(capsys, tmp_path):
    np.savez(tmp_path / "nolabels.npz", features=np.zeros((5, 3)))
    code, _, err = run_cli(capsys, "embed", "plot", tmp_path / "nolabels.npz")
    assert code == 2 and err.startswith("dlcv: error: ") and "no 'labels' array" in err
    code, _, err = run_cli(capsys, "embed", "plot", tmp_path)
    assert code == 2 and "kept no embedding snapshots" in err
    code, _, err = run_cli(capsys, "embed", "plot", tmp_path / "nolabels.npz", "--method", "umap")
    assert code == 2 and "choose from pca, tsne" in err


def test_embed_plot_does_not_import_torch(tmp_path):
    x, y = clusters()
    save_features(tmp_path / "f.npz", x, y)
    code = ("import sys; from dlcv.cli.main import main; "
            f"assert main(['embed', 'plot', r'{tmp_path / 'f.npz'}', '--method', 'pca']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_training_subset_snapshots_are_kept_and_plotted_apart(capsys, p1_data, recipe, tmp_path):
    from dlcv.classify import fit

    run = fit(recipe, p1_data, runs_dir=tmp_path / "runs", overrides=("embed.train_subset=8", "train.epochs=1"))
    subset = load_run_snapshots(run, training_subset=True)
    assert [s.epoch for s in subset] == [1] and len(subset[0].labels) == 8
    assert np.bincount(subset[0].labels).tolist() == [2, 2, 2, 2]  # class-balanced
    assert (run / "embeddings" / "train_epoch_001.npz").exists()
    assert len(load_run_snapshots(run)[0].labels) == 16  # the validation snapshots stay apart
    code, _, err = run_cli(capsys, "embed", "plot", run, "--training-subset", "--method", "pca")
    assert code == 0, err


@pytest.mark.parametrize("precision, dtype", [("32-true", "float32"), ("bf16-mixed", "bfloat16"),
                                              ("16-mixed", "float16"), ("bf16-true", "bfloat16")])
def test_snapshots_run_in_the_precision_of_the_training_steps(precision, dtype, tmp_path):
    # A T4 or V100 trains in 16-mixed: its snapshots (and masks through training, by the same two functions) run
    # in float16 there, not in float32; a bf16-true model gets its input in bf16. The model is left as it was.
    import types

    import torch
    from lightning.pytorch.plugins.precision import HalfPrecision, MixedPrecision, Precision

    from dlcv.data.features import load_features, snapshot_path
    from dlcv.tasks.snapshots import EmbeddingSnapshots

    plugin = {"32-true": Precision, "bf16-true": lambda: HalfPrecision("bf16-true")}.get(
        precision, lambda: MixedPrecision(precision, "cpu"))()
    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(12, 3)

        def forward_features(self, x):
            seen.append((self.training, torch.is_grad_enabled()))
            out = self.linear(x.flatten(1))
            seen.append(out.dtype)
            return out

    model = Net().to(torch.bfloat16 if precision == "bf16-true" else torch.float32).train()
    trainer = types.SimpleNamespace(precision_plugin=plugin, current_epoch=0, max_epochs=1, sanity_checking=False,
                                    is_global_zero=True, should_stop=False)
    images = torch.randint(0, 256, (5, 2, 2, 3), dtype=torch.uint8)
    snapshots = EmbeddingSnapshots(tmp_path, [1], {"": (images, np.arange(5) % 2, [f"{i}.png" for i in range(5)])},
                                   lambda x: x.float() / 255, batch_size=2)
    snapshots.on_train_epoch_end(trainer, types.SimpleNamespace(model=model, device=torch.device("cpu")))
    assert seen[0] == (False, False) and {str(d) for d in seen[1::2]} == {f"torch.{dtype}"} and model.training
    assert load_features(snapshot_path(tmp_path, 1, "")).features.shape == (5, 3)
