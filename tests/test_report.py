"""dlcv report: sections present exactly when their runs are, the runs' numbers in the page, the
architecture table, bad input, and the page as a browser shows it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import need, need_module, run_cli

from dlcv.report.architecture import trace_model
from dlcv.report.pdf import find_chromium, scripts_in
from dlcv.runs import read_metrics

CHROMIUM = find_chromium()  # the report's own choice: $DLCV_CHROMIUM, else the first Chromium on the PATH


class TableReader(HTMLParser):
    """Every table of a page as rows of cell texts, and the section ids and image sources."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.ids: list[str] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h2":
            self.ids.append(attrs.get("id", ""))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_page(path: Path) -> TableReader:
    reader = TableReader()
    reader.feed(path.read_text())
    return reader


def table_with(reader: TableReader, header: str) -> list[dict]:
    """The rows (as dicts by column) of the first table with a column named ``header``."""
    for table in reader.tables:
        if header in table[0]:
            return [dict(zip(table[0], row)) for row in table[1:]]
    raise AssertionError(f"no table with a column {header!r}")


def copy_run(run: Path, runs: Path) -> Path:
    """A copy of a run folder without its checkpoints (the report reads none); times are kept."""
    return Path(shutil.copytree(run, runs / run.name, ignore=shutil.ignore_patterns("*.ckpt", "tensorboard")))


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory, trained_run) -> Path:
    """A copy of the tiny classification run with its embedding figures drawn by ``dlcv embed plot``
    (once: t-SNE is the slow part), which the report then reuses."""
    from dlcv.viz.snapshots import plot_snapshots

    run = copy_run(trained_run, tmp_path_factory.mktemp("plotted"))
    plot_snapshots([run], methods="pca,tsne")
    return run


@pytest.fixture(scope="module")
def both_report(tmp_path_factory, plotted_run, seg_run) -> Path:
    """The report of one classification and one segmentation run."""
    base = tmp_path_factory.mktemp("report")
    copy_run(plotted_run, base / "runs")
    copy_run(seg_run, base / "runs")
    from dlcv.cli.main import main

    assert main(["report", "--runs", str(base / "runs"), "--output", str(base / "report")]) == 0
    return base / "report"


def test_a_report_of_only_classification_runs_has_only_that_section_and_replaces_an_earlier_one(
        capsys, tmp_path, plotted_run):
    copy_run(plotted_run, tmp_path / "runs")
    for _ in range(2):
        code, out, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
        assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no temporary folder left
    page = read_page(tmp_path / "report" / "index.html")
    assert page.ids == ["classification"]
    assert "Semantic segmentation" not in (tmp_path / "report" / "report.md").read_text()
    assert f"open {tmp_path / 'report' / 'index.html'}" in out


def test_a_report_of_both_problems_has_both_sections_and_their_figures(both_report):
    page = read_page(both_report / "index.html")
    assert page.ids == ["classification", "segmentation"]
    figures = sorted(p.name for p in (both_report / "figures").iterdir())
    for name in ("tiny_architecture.png", "tiny_curves.png", "tiny_confusion.png", "tiny_pca_panels.png",
                 "tiny_tsne_panels.png", "seg_tiny_architecture.png", "seg_tiny_curves.png",
                 "seg_tiny_masks_through_training.png"):
        assert name in figures
    # Self-contained: every image is a data URI, nothing is fetched.
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(page.images) == len(figures)
    markdown = (both_report / "report.md").read_text()
    assert all(f"(figures/{name})" in markdown for name in figures)
    # Nothing of the machine: the runs are named from their folder, no absolute path, user or host name.
    import getpass
    import socket

    for text in (markdown, (both_report / "index.html").read_text()):
        assert str(both_report.parent) not in text and "/tmp/" not in text and "under runs/" in text
        assert f"/{getpass.getuser()}/" not in text
        assert len(socket.gethostname()) < 8 or socket.gethostname() not in text


def test_the_tables_hold_the_runs_numbers(both_report, plotted_run, seg_run):
    page = read_page(both_report / "index.html")
    summary = json.loads((plotted_run / "summary.json").read_text())
    row = next(r for r in table_with(page, "selection accuracy") if r["run"] == "tiny")
    assert row["selection accuracy"] == f"{summary['best_model_score']:.4f}" == f"{summary['best_val_acc']:.4f}"
    assert row["epochs"] == str(summary["epochs"])

    seg_summary = json.loads((seg_run / "summary.json").read_text())
    best = max(read_metrics(seg_run / "metrics.csv"), key=lambda r: r["val_miou"])
    row = next(r for r in table_with(page, "mIoU") if r["run"] == "seg_tiny")
    assert row["mIoU"] == f"{seg_summary['best_model_score']:.4f}" == f"{best['val_miou']:.4f}"
    for name in ("Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren"):
        value = best[f"val_iou_{name.lower()}"]
        assert row[name] == ("–" if value is None else f"{value:.4f}")

    with open(plotted_run / "figures" / "embedding_metrics.csv", newline="") as handle:
        expected = list(csv.DictReader(handle))
    shown = table_with(page, "10-NN accuracy")
    assert [r["10-NN accuracy"] for r in shown] == [f"{float(e['knn_acc']):.4f}" for e in expected]
    assert [r["silhouette"] for r in shown] == [f"{float(e['silhouette']):.4f}" for e in expected]


BYOL_RECIPE = """\
task: ssl_pretrain
name: byol
data: {batch_size: 256}
views: {size: 32, min_scale: 0.2}
model: {arch: resnet18}
byol: {hidden_dim: 1024, output_dim: 128, momentum: 0.99}
optim: {name: adam, lr: 2.0e-3, weight_decay: 1.0e-6}
schedule: {name: cosine, warmup_epochs: 1}
train: {epochs: 3}
"""


def mark_data(run: Path, synthetic: bool) -> None:
    """Say in the run's resolved.json whether it was trained on synthetic data (as the fit driver records)."""
    resolved = json.loads((run / "resolved.json").read_text())
    (run / "resolved.json").write_text(json.dumps({**resolved, "synthetic_data": synthetic}))


def test_runs_on_synthetic_data_are_never_set_beside_the_courses_numbers(capsys, tmp_path, seg_run, plotted_run):
    assert json.loads((seg_run / "resolved.json").read_text())["synthetic_data"]  # conftest's data is synth's
    copy_run(seg_run, tmp_path / "runs")
    course_like = Path(shutil.copytree(seg_run, tmp_path / "runs" / "seg_course",
                                       ignore=shutil.ignore_patterns("*.ckpt", "tensorboard")))
    mark_data(course_like, synthetic=False)
    table = make_ssl_table(tmp_path / "runs", plotted_run)
    mark_data(table / "C", synthetic=True)
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
    assert code == 0, err
    page = read_page(tmp_path / "report" / "index.html")
    runs = {r["run"]: r for r in table_with(page, "course reports (range)")}
    assert runs["seg_tiny"]["course reports (range)"] == "not comparable (synthetic data)"
    assert runs["seg_course"]["course reports (range)"] != "not comparable (synthetic data)"
    beside = [r["report"] for r in table_with(page, "report")]
    assert "dlcv: seg_course" in beside and "dlcv: seg_tiny" not in beside
    settings = table_with(page, "selection accuracy")
    assert not any(column.startswith("course ") for column in settings[0])  # the A-E table: ours alone


def make_ssl_table(runs: Path, plotted_run: Path) -> Path:
    """A folder as dlcv ssl table leaves it: its recipe, table.json, the BYOL run and setting C's run."""
    table = runs / "ssl_cpu"
    byol = table / "byol"
    byol.mkdir(parents=True)
    (table / "recipe.yaml").write_text("task: ssl_table\nname: ssl_cpu\n")
    (byol / "recipe.yaml").write_text(BYOL_RECIPE)
    (byol / "metrics.csv").write_text("epoch,seconds,lr,momentum,train_loss,knn_acc\n1,4.0,0.001,0.99,1.9,0.21\n"
                                      "2,8.1,0.002,0.995,1.2,0.33\n3,12.2,0.0,1.0,0.8,0.375\n")
    (byol / "summary.json").write_text(json.dumps({"name": "byol", "epochs": 3, "fit_seconds": 12.2}))
    shutil.copytree(plotted_run, table / "C", ignore=shutil.ignore_patterns("*.ckpt", "tensorboard"))
    mark_data(table / "C", synthetic=False)  # as if trained on the course's images
    rows = [{"setting": s, "pretraining": p, "finetuning": f, "accuracy": a, "selection_accuracy": a + 0.01,
             "epochs": 2, "fit_seconds": 60.0, "notes": f"note {s}"}
            for s, p, f, a in (("A", "none", "full", 0.25), ("B", "supervised", "full", 0.5),
                               ("C", "self-supervised", "full", 0.4375), ("D", "supervised", "frozen", 0.3),
                               ("E", "self-supervised", "frozen", 0.2))]
    (table / "table.json").write_text(json.dumps({"name": "ssl_cpu", "arch": "resnet18", "rows": rows,
                                                   "note": "a frozen trunk keeps its batch-norm statistics"}))
    return table


def test_the_self_supervised_section_shows_the_byol_curve_the_table_beside_the_course_and_c_tsne(
        capsys, tmp_path, plotted_run):
    make_ssl_table(tmp_path / "runs", plotted_run)
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
    assert code == 0, err
    page = read_page(tmp_path / "report" / "index.html")
    assert page.ids == ["ssl"]  # setting C's classification run belongs to its table, not to Problem 1
    settings = {r["setting"]: r for r in table_with(page, "selection accuracy")}
    # the accuracies make_ssl_table wrote, as the page must show them
    assert {s: r["accuracy"] for s, r in settings.items()} == {"A": "0.2500", "B": "0.5000", "C": "0.4375",
                                                               "D": "0.3000", "E": "0.2000"}
    assert settings["C"]["course R1"] == "0.4507" and settings["E"]["course R4"] == "0.2857"
    assert settings["D"]["notes"] == "note D"
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert figures == ["C_ssl_cpu_tsne.png", "byol_curves.png"]
    assert "a frozen trunk keeps its batch-norm statistics" in (tmp_path / "report" / "report.md").read_text()


def test_the_sam_section_shows_the_overlays_and_the_refinement_before_and_after(capsys, tmp_path):
    from PIL import Image

    masks, refined = tmp_path / "runs" / "sam_out", tmp_path / "runs" / "refined"
    masks.mkdir(parents=True)
    refined.mkdir()
    Image.new("RGB", (120, 80), (30, 160, 90)).save(masks / "figure.png")
    (masks / "recipe.yaml").write_text("model: {type: vit_b}\n")
    (masks / "summary.json").write_text(json.dumps({
        "model_type": "vit_b", "device": "cpu", "prefilter": True, "generator": {"points_per_side": 16},
        "images": 3, "seconds_per_image": 12.25, "masks_per_image": 41.5, "figure_images": ["0013"],
        "figure": "figure.png"}))
    before, after = [0.7, 0.8, 0.3, 0.8, 0.7, 0.7], [0.72, 0.81, 0.29, 0.82, 0.75, 0.71]
    (refined / "refine.json").write_text(json.dumps({
        "images": 3, "min_predicted_iou": 0.88, "min_area": 100, "order": "largest region first",
        "per_image": {"0013": {"regions": 40, "regions_used": 12, "pixels_changed": 5000}},
        "mean_iou_before": 0.6667, "mean_iou_after": 0.6833, "iou_before": before, "iou_after": after}))
    code, out, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
    assert code == 0, err
    assert "left out" not in out  # the SAM folder's recipe.yaml is not an untrained run
    page = read_page(tmp_path / "report" / "index.html")
    assert page.ids == ["sam"] and len(page.images) == 1
    rows = {r["class"]: r for r in table_with(page, "IoU before")}
    assert rows["Rangeland"]["IoU before"] == "0.3000" and rows["Rangeland"]["IoU after"] == "0.2900"
    assert rows["mIoU"]["IoU after"] == "0.6833" and rows["mIoU"]["change"] == "0.0166"
    details = {r[""]: r["value"] for r in table_with(page, "value")}
    assert details["SAM model"] == "vit_b" and details["masks per image"] == "41.50"


def test_the_confusion_matrix_is_saved_with_the_run_and_counts_its_validation_images(trained_run, p1_data):
    with open(trained_run / "confusion.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["true", "pred_0", "pred_1", "pred_2", "pred_3"]
    counts = [[int(v) for v in row[1:]] for row in rows[1:]]
    assert [sum(row) for row in counts] == [4, 4, 4, 4]  # 4 validation images per class


def test_layer_table_covers_every_parameter_in_call_order():
    from dlcv.models import create_model

    model = create_model("dlcv_net", num_classes=10, widths=[8, 16, 16], stem_width=8)
    import torch

    trace = trace_model(model, torch.zeros(1, 3, 32, 32))
    layers = trace.view(40)
    assert sum(layer.parameters for layer in layers) == sum(p.numel() for p in model.parameters())
    assert layers[0].name == "stem.0" and layers[-1].name == "head"
    assert layers[-1].output_shape == "10" and trace.output == "10"
    assert len(trace.view(8)) <= 8 < len(layers)


def test_bad_input_gives_one_line_and_leaves_files_alone(capsys, tmp_path, trained_run):
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "nowhere", "--output", tmp_path / "r")
    assert code == 2 and "nowhere: no such folder of runs" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "empty", "--output", tmp_path / "r")
    assert code == 2 and "no run folders" in err
    run = copy_run(trained_run, tmp_path / "runs")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "mine")
    assert code == 2 and "holds files that dlcv did not write" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (run / "metrics.csv").write_text("epoch,val_acc\n1,abc\n")
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "r")
    assert code == 2 and f"{run / 'metrics.csv'}:2: val_acc is not a number" in err
    assert not (tmp_path / "r").exists()
    old = copy_run(trained_run, tmp_path / "old")  # a run folder whose recipe has a key today's schema lacks
    (old / "recipe.yaml").write_text((old / "recipe.yaml").read_text().replace("\ntrain: {", "\ntrain: {foo: 1, ", 1))
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "old", "--output", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "recipe.yaml" in err and "train.foo" in err, err
    assert not (tmp_path / "r").exists()


def test_the_page_renders_in_headless_chromium_with_every_image_and_no_console_error(both_report, seg_run):
    need(CHROMIUM is not None, "a Chromium (Debian's chromium)")
    playwright = need_module("playwright.sync_api", "playwright")
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((both_report / "index.html").as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        images = page.evaluate("document.images.length")
        text = page.inner_text("body")
        shot = both_report.parent / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert images > 0 and broken == 0
    assert all(url.startswith(("file:", "data:")) for url in requests)  # no external request
    summary = json.loads((seg_run / "summary.json").read_text())
    assert f"{summary['best_model_score']:.4f}" in text
    assert shot.stat().st_size > 10_000


# --- the report as a PDF, and each year's order -----------------------------------------------------------
def test_the_report_is_printed_to_an_a4_pdf_holding_every_figure_and_section(both_report):
    need(CHROMIUM is not None, "a Chromium (Debian's chromium)")
    pypdf = need_module("pypdf", "pypdf")
    from dlcv.report.pdf import pdf_pages

    reader = pypdf.PdfReader(both_report / "report.pdf")
    page = read_page(both_report / "index.html")
    assert len(reader.pages) >= 2 and pdf_pages(both_report / "report.pdf") == len(reader.pages)
    first = reader.pages[0].extract_text()
    assert "DLCV HW1: report" in first and "selection accuracy" in first  # the first section begins on page one
    for pdf_page in reader.pages:  # A4 portrait, in points
        assert (round(float(pdf_page.mediabox.width)), round(float(pdf_page.mediabox.height))) == (595, 842)
    assert sum(len(p.images) for p in reader.pages) == len(page.images) > 0
    text = " ".join(p.extract_text() for p in reader.pages)
    for title in ("Problem 1: image classification", "Semantic segmentation"):
        assert title in text


def test_without_chromium_the_report_says_how_to_get_one_and_writes_the_rest(capsys, monkeypatch, tmp_path,
                                                                              plotted_run):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("DLCV_CHROMIUM", raising=False)
    copy_run(plotted_run, tmp_path / "runs")
    code, out, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
    assert code == 0, err
    assert "note: no Chromium found, so no report.pdf: install one (Debian/Ubuntu: apt-get install chromium)" in out
    assert (tmp_path / "report" / "index.html").is_file() and not (tmp_path / "report" / "report.pdf").exists()
    monkeypatch.setenv("DLCV_CHROMIUM", str(tmp_path / "no-such-browser"))
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report")
    assert code == 2 and "no-such-browser: not an executable file" in err


def test_a_year_orders_the_sections_as_its_homework(capsys, tmp_path, plotted_run, seg_run):
    copy_run(plotted_run, tmp_path / "runs")
    copy_run(seg_run, tmp_path / "runs")
    for year, first in ((2023, "classification"), (2024, "segmentation")):
        code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report",
                               "--year", year, "--no-pdf")
        assert code == 0, err
        assert read_page(tmp_path / "report" / "index.html").ids[0] == first
    code, _, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "other",
                           "--year", 2020)
    assert code == 2 and "--year 2020: choose among 2021, 2022, 2023, 2024" in err
    assert not (tmp_path / "other").exists()


def test_a_summary_of_the_release_before_reads_its_selection_score_by_the_old_name(tmp_path):
    from dlcv.records import RunSummary

    old = RunSummary.of({"name": "old", "selected_on": "holdout 5% of train_50", "best_val_acc": 0.71}, tmp_path)
    new = RunSummary.of({"name": "new", "monitor": "val_miou", "best_model_score": 0.72, "best_val_miou": 0.72},
                        tmp_path)
    assert old.selection_score == 0.71 and new.selection_score == 0.72 and RunSummary().selection_score is None


def test_curves_of_a_run_chosen_on_a_holdout_say_holdout_not_validation():
    from types import SimpleNamespace

    from dlcv.report.blocks import split_labels
    from dlcv.report.sections.segmentation import PANELS

    on_holdout = SimpleNamespace(summary=SimpleNamespace(selected_on="holdout 10% of train"))
    on_validation = SimpleNamespace(summary=SimpleNamespace(selected_on="validation"))
    relabelled = split_labels(PANELS, on_holdout)
    labels = [label for panel in relabelled for _, label in panel.columns] + [p.title for p in relabelled]
    assert "holdout mIoU" in labels and not any("validation" in label for label in labels)
    assert split_labels(PANELS, on_validation) == PANELS


# --- the students' own scripts: Chinese answers in the PDF ------------------------------------------------
CHINESE_ANSWERS = """name: 王小明
student_id: r12345678

## P1.2 accuracy

模型 B 的準確率較高，**model B** wins:

- fine-tuned from ImageNet
- at 128 pixels

| model | accuracy |
|---|---|
| tiny | unscored |
"""


def embedded_fonts(resources) -> list:
    """Every font of a PDF page's resources, those of its form XObjects included."""
    resources = resources.get_object() if resources is not None else {}
    fonts = [font.get_object() for font in (resources.get("/Font") or {}).values()]
    for form in (resources.get("/XObject") or {}).values():
        if "/Resources" in form.get_object():
            fonts += embedded_fonts(form.get_object()["/Resources"])
    return fonts


def test_a_chinese_answer_is_drawn_with_an_embedded_font_that_covers_it(capsys, tmp_path, plotted_run):
    need(CHROMIUM is not None, "a Chromium (Debian's chromium)")
    need(bool(subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip()),
         "a font for Chinese (Debian: apt-get install fonts-noto-cjk)")
    pypdf = need_module("pypdf", "pypdf")
    copy_run(plotted_run, tmp_path / "runs")
    (tmp_path / "a.md").write_text(CHINESE_ANSWERS)
    code, out, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report",
                             "--year", 2022, "--answers", tmp_path / "a.md")
    assert code == 0, err
    assert "no font on this machine covers" not in out
    reader = pypdf.PdfReader(tmp_path / "report" / "report.pdf")
    fonts = [font for page in reader.pages for font in embedded_fonts(page.get("/Resources"))]
    # Chromium embeds the CJK font's glyphs as Type 3 fonts: one drawn glyph per character (a missing font would
    # give them all one box), beside the named Latin fonts
    glyphs = {name for f in fonts if f.get("/Subtype") == "/Type3" for name in (f.get("/CharProcs") or {})
              if name != "/g0"}
    characters = {c for c in CHINESE_ANSWERS if scripts_in(c)}
    assert len(glyphs) >= len(characters), (sorted(glyphs), sorted(characters))
    text = unicodedata.normalize("NFKC", "".join(page.extract_text() for page in reader.pages))
    assert "模型B的準確率較高" in "".join(text.split()) and "王小明" in text  # extraction spaces them unevenly
    assert "model B wins" in text and "**" not in text  # the bold rendered, not its asterisks
    assert "fine-tuned from ImageNet" in text and "- fine-tuned" not in text  # a list, not a dash
    assert "unscored" in text and "|---|" not in text  # a table, not its Markdown


def test_without_a_font_for_the_answers_script_the_report_names_the_package_and_still_writes(capsys, tmp_path,
                                                                                            monkeypatch, plotted_run):
    need(CHROMIUM is not None, "a Chromium (Debian's chromium)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fc-list").write_text("#!/bin/sh\nexit 0\n")  # fontconfig that knows no font of any language
    (bin_dir / "fc-list").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    copy_run(plotted_run, tmp_path / "runs")
    (tmp_path / "a.md").write_text(CHINESE_ANSWERS)
    code, out, err = run_cli(capsys, "report", "--runs", tmp_path / "runs", "--output", tmp_path / "report",
                             "--year", 2022, "--answers", tmp_path / "a.md")
    assert code == 0, err
    assert ("note: no font on this machine covers the answers' Chinese, so report.pdf shows those characters as "
            "empty boxes: install one (Debian, Ubuntu and Colab: apt-get install fonts-noto-cjk)") in out
    assert (tmp_path / "report" / "index.html").is_file() and (tmp_path / "report" / "report.pdf").is_file()


def test_the_scripts_of_an_answer_are_found_by_their_characters():
    from dlcv.report.pdf import scripts_in

    assert scripts_in("Model B is better.") == {}
    assert scripts_in("模型 B 較好。") == {"zh": "Chinese"}
    assert scripts_in("モデル と 모델") == {"ja": "Japanese", "ko": "Korean"}
