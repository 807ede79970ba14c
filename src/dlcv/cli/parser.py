"""The ``dlcv`` argument parser: one function per group of commands; each command names its function in
``dlcv.cli.commands``."""

from __future__ import annotations

import argparse

from dlcv.cli import commands as run
from dlcv.recipes import RECIPES, SEG_TTA_MODES, TTA_MODES


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The flags every training command shares: where its run folder goes and how an old one is treated."""
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--name", help="run folder name (default: the recipe's name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run folder that already exists")
    _budget_option(parser, "train.budget")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run of this name from its last.ckpt, with its saved recipe")


def _budget_option(parser: argparse.ArgumentParser, key: str) -> None:
    parser.add_argument("--budget", metavar="DURATION",
                        help=f"end the whole command within this time, e.g. 20m or 1h30m (sets {key}): the steps are "
                             "planned from the measured speed and the schedule runs over them; none: train by epochs")


def _file_overwrite(parser) -> None:
    """``--overwrite`` of a command that writes files a user names (``dlcv.io.check_output_file``'s rule)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file that dlcv did not write (one it wrote is replaced)")


def _tta_option(parser: argparse.ArgumentParser, modes: tuple[str, ...]) -> None:
    parser.add_argument("--tta", choices=modes, help="test-time augmentation (default: the recipe's train.tta)")


def _group(commands, name: str, help: str):
    """A command whose actions are commands of their own (``dlcv classify fit``)."""
    return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True, metavar="ACTION")


def _command(commands, name: str, handler, help: str) -> argparse.ArgumentParser:
    """A command that runs ``handler(args)``."""
    command = commands.add_parser(name, help=help)
    command.set_defaults(handler=handler)
    return command


def _top_commands(commands) -> None:
    """The whole-homework commands: demo, report, handin, launch."""
    demo = _command(commands, "demo", run.demo,
                    "synthesise the default data, train, predict and evaluate at small scale")
    demo.add_argument("--output", default="demo", help="folder for the data, runs and results (default: demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo in that folder")

    report = _command(commands, "report", run.report,
                      "every table and figure of the homework from run folders, as a page")
    report.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    report.add_argument("--output", default="report",
                        help="folder for index.html, report.md and figures/ (new, empty or an earlier report)")
    report.add_argument("--overwrite", action="store_true",
                        help="also replace a folder of dlcv's that is not a report (an earlier report always is)")
    report.add_argument("--year", type=int, help="order the sections as that year's homework (2021-2024) numbers "
                        "its problems")
    report.add_argument("--no-pdf", action="store_true", help="write no report.pdf (it needs a Chromium)")
    report.add_argument("--answers-template", metavar="FILE",
                        help="write FILE: the year's questions, each with what dlcv places for it, to answer in")
    report.add_argument("--answers", metavar="FILE", help="your answers (the template filled in): each under its "
                        "question, your name and student id at the top")

    hand = _command(commands, "handin", run.handin, "gather a year's course scripts and the checkpoints they load "
                    "(weights only) into one folder")
    hand.add_argument("--year", type=int, required=True, help="the homework's year: 2021, 2022, 2023 or 2024")
    hand.add_argument("--output", required=True, help="folder to write (new or empty)")
    hand.add_argument("--runs", default="runs", help="folder of run folders holding the checkpoints (default: runs)")
    hand.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                      help="the checkpoint for p1, seg or ssl instead of the first of the script's runs that exists")
    hand.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                      help="where the download script fetches NAME's weights (p1, ssl, seg), e.g. a Google Drive or "
                           "Dropbox link (repeatable)")
    hand.add_argument("--half", action="store_true", help="store each weights file in float16 (half the size) where "
                      "dlcv's predictions on the images its run validated on stay the same; otherwise float32")
    hand.add_argument("--overwrite", action="store_true", help="replace an earlier hand-in folder")

    launch = _command(commands, "launch", run.launch, "run a training command in several processes or on several "
                      "nodes (torchrun's launcher), failures in one line")
    launch.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    launch.add_argument("--node-rank", type=int, default=0, help="this machine's place, 0 .. nnodes-1 (default 0)")
    launch.add_argument("--nproc-per-node", type=int, default=1,
                        help="processes on this machine: one per GPU, or CPU processes (default 1)")
    launch.add_argument("--master", metavar="HOST:PORT", help="with --nnodes > 1: node 0's address, the same on "
                        "every node")
    launch.add_argument("--join-timeout", type=int, default=600, metavar="SECONDS",
                        help="how long the nodes wait for each other before stopping (default 600)")
    launch.add_argument("dlcv_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                        help="the dlcv command each process runs, e.g. -- classify fit --config ...")


def _data_commands(commands) -> None:
    """``dlcv data``: synthetic data and the transfer split."""
    data = _group(commands, "data", "data sets")
    synth = _command(data, "synth", run.synth, "write the embedded default data in the course's formats")
    synth.add_argument("--output", required=True, help="folder to write p1_data/ and p2_data/ into")
    synth.add_argument("--problems", default="p1,p2",
                       help="which data sets, comma-separated: p1, p2, ssl (default p1,p2)")
    synth.add_argument("--classes", type=int, default=10)
    synth.add_argument("--train-per-class", type=int, default=100)
    synth.add_argument("--val-per-class", type=int, default=20)
    synth.add_argument("--p2-train", type=int, default=24, help="satellite training pairs (default 24)")
    synth.add_argument("--p2-validation", type=int, default=8, help="satellite validation pairs (default 8)")
    synth.add_argument("--p2-size", type=int, default=512, help="side of the satellite images (default 512)")
    synth.add_argument("--ssl-arch", default="resnet50",
                       help="architecture of the synthetic pretrain_model_SL.pt (default resnet50, the course's)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace data already there")
    split = _command(data, "transfer-split", run.transfer_split, "the p1 images as Mini-ImageNet (classes 0-24) and "
                     "Office-Home (classes 25-49) for the self-supervised problem")
    split.add_argument("--p1", required=True, help="the p1_data folder (train_50/, val_50/)")
    split.add_argument("--output", required=True, help="folder to write mini/, office/ and supervised/ into")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")


def _classify_commands(commands) -> None:
    """``dlcv classify`` (Problem 1) and ``dlcv embed`` (its representations)."""
    classify = _group(commands, "classify", "Problem 1: image classification")
    fit = _command(classify, "fit", run.fit, "train a classifier from a recipe")
    fit.add_argument("--config", required=True, help="recipe YAML, e.g. configs/p1/model_a.yaml")
    fit.add_argument("--data", required=True, help="folder holding train_50/ and val_50/ (p1_data)")
    _run_options(fit)

    predict = _command(classify, "predict", run.predict, "write filename,label for every image of a folder")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--output", required=True, help="CSV to write")
    predict.add_argument("--id-column", default="filename", choices=("filename", "image_id"),
                         help="name of the first column (image_id: the 2021 format)")
    predict.add_argument("--ensemble", type=int, default=1, metavar="K",
                         help="average the run's K best checkpoints (needs train.save_top_k >= K)")
    _tta_option(predict, TTA_MODES)
    _file_overwrite(predict)

    evaluate = _command(classify, "evaluate", run.evaluate, "accuracy of a predictions CSV against labels")
    evaluate.add_argument("--predictions", required=True, help="CSV with filename (or image_id) and label")
    evaluate.add_argument("--labels", required=True, help="filename,label CSV, or an image folder named by class")
    evaluate.add_argument("--confusion", help="confusion-matrix figure to write (default: beside the predictions)")
    _file_overwrite(evaluate)

    embed = _group(commands, "embed", "learned representations")
    embed_plot = _command(embed, "plot", run.embed_plot, "PCA / t-SNE panels of a run's snapshots or of feature files")
    embed_plot.add_argument("sources", nargs="+", metavar="RUN_OR_NPZ",
                            help="a run folder (its embeddings/ snapshots) or .npz files with features and labels")
    embed_plot.add_argument("--method", default="pca,tsne", help="pca, tsne or both (default: pca,tsne)")
    embed_plot.add_argument("--output", help="folder for the figures (default: RUN/figures or beside the files)")
    embed_plot.add_argument("--k", type=int, default=10, help="neighbours for the kNN accuracy (default: 10)")
    embed_plot.add_argument("--perplexity", type=float, default=30.0)
    embed_plot.add_argument("--training-subset", action="store_true",
                            help="plot the run's training-subset snapshots instead of its validation ones")


def _segment_commands(commands) -> None:
    """``dlcv segment``: Problem 2."""
    segment = _group(commands, "segment", "Problem 2: semantic segmentation of satellite images")
    seg_fit = _command(segment, "fit", run.fit, "train a segmentation model from a recipe")
    seg_fit.add_argument("--config", required=True, help="recipe YAML, e.g. configs/seg/cpu.yaml")
    seg_fit.add_argument("--data", required=True, help="folder holding train/ and validation/ (p2_data)")
    _run_options(seg_fit)

    seg_predict = _command(segment, "predict", run.segment_predict,
                           "write NNNN_mask.png for every NNNN_sat.jpg of a folder")
    seg_predict.add_argument("--checkpoint", required=True)
    seg_predict.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    seg_predict.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    _tta_option(seg_predict, SEG_TTA_MODES)
    seg_predict.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")

    seg_eval = _command(segment, "evaluate", run.segment_evaluate, "mIoU of predicted masks, as the course grades it")
    seg_eval.add_argument("--predictions", required=True, help="folder of predicted NNNN_mask.png")
    seg_eval.add_argument("--labels", required=True, help="folder of ground-truth NNNN_mask.png")
    seg_eval.add_argument("--unmapped", choices=("unknown", "error"), default="unknown",
                          help="colours in no class (red): count as Unknown (default) or refuse the mask")
    seg_eval.add_argument("--breakdown", help="CSV to write with each image's per-class IoU")
    _file_overwrite(seg_eval)

    seg_overlay = _command(segment, "overlay", run.segment_overlay, "draw a mask over its satellite image")
    seg_overlay.add_argument("--image", required=True)
    seg_overlay.add_argument("--mask", required=True)
    seg_overlay.add_argument("--output", required=True, help="PNG to write")
    seg_overlay.add_argument("--alpha", type=float, default=0.45, help="opacity of the mask colours (0..1)")
    _file_overwrite(seg_overlay)

    seg_progress = _command(segment, "progress", run.segment_progress,
                            "grid of a run's predicted masks through training")
    seg_progress.add_argument("run", help="run folder")
    seg_progress.add_argument("--output",
                              help="figure path without suffix (default: RUN/figures/masks_through_training)")
    _file_overwrite(seg_progress)


def _sam_commands(commands) -> None:
    """``dlcv sam``: Segment Anything."""
    sam = _group(commands, "sam", "Segment Anything on the satellite images")
    sam_masks = _command(sam, "masks", run.sam_masks,
                         "SAM's automatic masks: COCO RLE JSON and an overlay per image, a figure")
    sam_masks.add_argument("--checkpoint", required=True, help="local SAM checkpoint, e.g. sam_vit_b_01ec64.pth")
    sam_masks.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    sam_masks.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    sam_masks.add_argument("--only", metavar="ID,ID,...", help="these images of --images alone, e.g. the report's "
                           "three: 0013,0062,0104 (minutes each on a CPU)")
    sam_refine = _command(sam, "refine", run.sam_refine, "set each SAM region of predicted masks to its majority class")
    sam_refine.add_argument("--predictions", required=True, help="folder of predicted NNNN_mask.png")
    sam_refine.add_argument("--output", required=True, help="folder for the refined masks (new or empty)")
    sam_refine.add_argument("--checkpoint", help="local SAM checkpoint to run on --images")
    sam_refine.add_argument("--images", help="folder of the NNNN_sat.jpg images the predictions are of")
    sam_refine.add_argument("--sam-masks", help="instead of --checkpoint: the output folder of `dlcv sam masks`")
    sam_refine.add_argument("--labels", help="folder of ground-truth NNNN_mask.png: print the mIoU before and after")
    for command in (sam_masks, sam_refine):
        command.add_argument("--model", help="SAM model type: vit_h (default), vit_l, vit_b (or vit_tiny)")
        command.add_argument("--config", help="recipe YAML, e.g. configs/sam/fast.yaml (default: the official knobs)")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a recipe key, e.g. --set generator.points_per_side=16 (repeatable)")
        command.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")


def _ssl_commands(commands) -> None:
    """``dlcv ssl``: BYOL and the settings A-E."""
    ssl = _group(commands, "ssl", "self-supervised pre-training (BYOL) and the transfer settings A-E")

    ssl_pretrain = _command(ssl, "pretrain", run.ssl_pretrain,
                            "BYOL on a folder of unlabelled images; exports backbone.pt")
    ssl_pretrain.add_argument("--config", help="BYOL recipe, e.g. configs/ssl/byol_resnet50.yaml")
    ssl_pretrain.add_argument("--data", required=True, help="folder of unlabelled images (mini/train)")
    ssl_pretrain.add_argument("--monitor", help="kNN accuracy per epoch on a labelled folder: Office-Home (train/, "
                              "val/, CSVs) or p1 layout (train_50/, val_50/), e.g. the transfer split's supervised/")
    _run_options(ssl_pretrain)

    ssl_finetune = _command(ssl, "finetune", run.ssl_finetune, "fine-tune one setting (A-E) on Office-Home")
    ssl_finetune.add_argument("--setting", required=True, help="A (none/full), B (supervised/full), C (ours/full), "
                              "D (supervised/frozen), E (ours/frozen)")
    ssl_finetune.add_argument("--backbone",
                              help="backbone file (B, D: pretrain_model_SL.pt; C, E: runs/.../backbone.pt)")
    ssl_finetune.add_argument("--data", required=True, help="the Office-Home folder (train/, val/, train.csv, val.csv)")
    ssl_finetune.add_argument("--config", help="fine-tuning recipe (default: the built-in one, R1's)")
    _run_options(ssl_finetune)

    ssl_table = _command(ssl, "table", run.ssl_table, "run or reuse settings A-E from one recipe; write the table")
    ssl_table.add_argument("--config", required=True, help="settings recipe, e.g. configs/ssl/settings.yaml")
    ssl_table.add_argument("--data", help="folder holding mini/train, office/ (and supervised/ or the "
                           "supervised backbone file); default: the recipe's data.root")
    ssl_table.add_argument("--runs-dir", default="runs", help="where the table's folder goes (default: runs)")
    ssl_table.add_argument("--name", help="the table's folder name (default: the recipe's name)")
    ssl_table.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a settings key, e.g. --set settings=[A,C] (repeatable)")
    _budget_option(ssl_table, "budget; each run gets its share of what is left when it starts")

    ssl_predict = _command(ssl, "predict", run.ssl_predict,
                           "write id,filename,label for every row of an Office-Home CSV")
    ssl_predict.add_argument("--checkpoint", required=True)
    ssl_predict.add_argument("--csv", required=True, help="id,filename[,label] CSV; its order is kept")
    ssl_predict.add_argument("--images", required=True, help="folder of the CSV's images")
    ssl_predict.add_argument("--output", required=True, help="CSV to write")
    _tta_option(ssl_predict, TTA_MODES)
    _file_overwrite(ssl_predict)

    ssl_export = _command(ssl, "export", run.ssl_export,
                          "a resnet_transfer checkpoint's trunk as a plain torchvision state_dict")
    ssl_export.add_argument("--checkpoint", required=True)
    ssl_export.add_argument("--output", required=True, help="file to write (e.g. pretrain_model_SL.pt)")
    _file_overwrite(ssl_export)


def _rest_commands(commands) -> None:
    """``dlcv export``, ``dlcv models`` and ``dlcv keys``."""
    export = _command(commands, "export", run.export, "a checkpoint's model as plain torch code or ONNX, checked "
                      "against the checkpoint")
    export.add_argument("checkpoint", help="a classification or segmentation checkpoint (best.ckpt)")
    export.add_argument("--format", choices=("torch", "onnx"), default="torch",
                        help="torch: a folder of model.py and weights.pth (torch alone runs it); onnx: one file")
    export.add_argument("--output", required=True, help="the folder (torch) or file (onnx) to write")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export (or a file of yours)")

    _command(commands, "models", run.models, "list the model names a recipe can use")
    keys = _command(commands, "keys", run.keys, "list every recipe key of a task: its default, rule and meaning")
    keys.add_argument("task", nargs="?", choices=list(RECIPES))
    keys.add_argument("--markdown", action="store_true", help="Markdown tables, one per section (of every task without "
                      "one): the tables of docs/configuration.md")


def build_parser() -> argparse.ArgumentParser:
    """The ``dlcv`` argument parser: every command, its options and the function that runs it."""
    parser = argparse.ArgumentParser(prog="dlcv", description="The computer-vision work of DLCV HW1, end to end.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_top_commands, _data_commands, _classify_commands, _segment_commands, _sam_commands, _ssl_commands,
                _rest_commands):
        add(commands)
    return parser
