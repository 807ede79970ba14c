"""``dlcv``: one command per job of the homework.

Each handler imports what it needs when it runs, so ``dlcv --help`` and ``dlcv classify evaluate``
start without loading torch. A ``DlcvError`` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from dlcv.errors import DlcvError
from dlcv.recipes import RECIPES, SEG_TTA_MODES, TTA_MODES


def _synth(args) -> None:
    from dlcv.data.synth import synth_p1, synth_p2, synth_ssl

    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    if not problems or any(p not in ("p1", "p2", "ssl") for p in problems):
        raise DlcvError(f"--problems {args.problems!r}: choose among p1, p2, ssl (comma-separated)")
    if "p1" in problems:
        target = synth_p1(args.output, num_classes=args.classes, train_per_class=args.train_per_class,
                          val_per_class=args.val_per_class, seed=args.seed, overwrite=args.overwrite)
        print(f"wrote {target} ({args.classes} classes, {args.train_per_class} training and "
              f"{args.val_per_class} validation images each)")
    if "p2" in problems:
        target = synth_p2(args.output, train=args.p2_train, validation=args.p2_validation, size=args.p2_size,
                          seed=args.seed, overwrite=args.overwrite)
        print(f"wrote {target} ({args.p2_train} training and {args.p2_validation} validation pairs of "
              f"{args.p2_size}x{args.p2_size} satellite-like images with land-cover masks)")
    if "ssl" in problems:
        target = synth_ssl(args.output, arch=args.ssl_arch, seed=args.seed, overwrite=args.overwrite)
        print(f"wrote {target}/mini/train (unlabelled), {target}/office/{{train,val}} with train.csv, val.csv, "
              f"and {target}/pretrain_model_SL.pt (a random {args.ssl_arch} in the course file's form)")


def _transfer_split(args) -> None:
    from dlcv.data.transfer import write_transfer_split

    counts = write_transfer_split(args.p1, args.output, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.output}: mini/train {counts['mini']} unlabelled images (classes 0-24); office/train "
          f"{counts['office_train']} and office/val {counts['office_val']} (classes 25-49 as 0-24); supervised/ "
          f"{counts['supervised_train']} + {counts['supervised_val']} labelled images of classes 0-24")


def _overrides(args, budget_key: str) -> tuple[str, ...]:
    """The command's ``--set`` overrides, and ``--budget`` as the recipe's budget key."""
    from dlcv.recipes import Duration, describe, parse_duration

    if args.budget is None:
        return tuple(args.set)
    if args.budget.strip().lower() == "none":  # no budget: the run trains its recipe's epochs
        return (*args.set, f"{budget_key}=null")
    if parse_duration(args.budget) is None:
        raise DlcvError(f"--budget {args.budget!r}: give {describe(Duration)}, or none")
    return (*args.set, f"{budget_key}={args.budget}")


def _name(args) -> str | None:
    """``--name``, a plain folder name (the rule of the recipe's ``name``)."""
    from dlcv.errors import shown
    from dlcv.recipes import FolderName, describe, is_folder_name

    if args.name is not None and not is_folder_name(args.name):
        raise DlcvError(f"--name {shown(args.name)}: give {describe(FolderName)}")
    return args.name


def _run_kwargs(args) -> dict:
    """What every training command passes on from ``_run_options``."""
    if args.resume and args.overwrite:
        raise DlcvError("--resume and --overwrite: give one (--resume continues the run folder, --overwrite "
                        "starts it afresh)")
    return {"runs_dir": args.runs_dir, "name": _name(args), "overrides": _overrides(args, "train.budget"),
            "overwrite": args.overwrite, "resume": args.resume}


def _ssl_pretrain(args) -> None:
    from dlcv.ssl import pretrain

    pretrain(args.config, args.data, monitor=args.monitor, **_run_kwargs(args))


def _ssl_finetune(args) -> None:
    from dlcv.ssl import finetune

    finetune(args.setting, args.data, backbone=args.backbone, config=args.config, **_run_kwargs(args))


def _ssl_table(args) -> None:
    from dlcv.ssl_table import table

    folder = table(args.config, args.data, runs_dir=args.runs_dir, name=_name(args),
                   overrides=_overrides(args, "budget"))
    print((folder / "table.md").read_text())
    print(f"wrote {folder / 'table.md'}, {folder / 'table.csv'}, {folder / 'table.json'}")


def _ssl_predict(args) -> None:
    from dlcv.ssl import predict

    count = predict(args.checkpoint, args.csv, args.images, args.output, tta=args.tta, overwrite=args.overwrite)
    print(f"wrote {count} predictions to {args.output}")


def _ssl_export(args) -> None:
    from dlcv.ssl import export

    print(f"wrote {export(args.checkpoint, args.output, overwrite=args.overwrite)}")


def _fit(args) -> None:
    from dlcv import classify, segment

    fit = {"classify": classify.fit, "segment": segment.fit}[args.command]  # dlcv classify fit, dlcv segment fit
    fit(args.config, args.data, **_run_kwargs(args))


def _predict(args) -> None:
    from dlcv.classify import predict

    count = predict(args.checkpoint, args.images, args.output, id_column=args.id_column, ensemble=args.ensemble,
                    tta=args.tta, overwrite=args.overwrite)
    print(f"wrote {count} predictions to {args.output}")


def _evaluate(args) -> None:
    import math

    from dlcv.classify import evaluate

    result = evaluate(args.predictions, args.labels, confusion=args.confusion, overwrite=args.overwrite)
    print("per-class accuracy (class: accuracy / images)")
    cells = [f"{c:>3}: {a:.4f} / {n}" if not math.isnan(a) else f"{c:>3}:    -   / 0"
             for c, (a, n) in enumerate(zip(result["per_class"], result["support"]))]
    for i in range(0, len(cells), 5):
        print("  " + "   ".join(cells[i : i + 5]))
    print(f"confusion matrix: {result['confusion_figure']}")
    print(f"images: {result['images']}")
    print(f"accuracy: {result['accuracy']:.4f}")


def _embed_plot(args) -> None:
    import math

    from dlcv.viz.snapshots import plot_snapshots

    if not (math.isfinite(args.perplexity) and args.perplexity > 0):
        raise DlcvError(f"--perplexity {args.perplexity:g}: give a number > 0 (t-SNE's neighbourhood size, e.g. 30)")
    if args.k < 1:
        raise DlcvError(f"--k {args.k}: give a whole number >= 1 (the neighbours of the kNN accuracy)")
    result = plot_snapshots(args.sources, methods=args.method, output=args.output, k=args.k,
                            perplexity=args.perplexity, training_subset=args.training_subset)
    for row in result["rows"]:
        print(f"{row['snapshot']}: {row['points']} points x {row['dims']} dims  "
              f"knn_acc {row['knn_acc']:.4f}  silhouette {row['silhouette']:.4f}")
        if args.k >= row["points"]:  # each point's neighbours are the others: knn_accuracy takes them all
            print(f"note: {row['snapshot']}: --k {args.k} is not below its {row['points']} points; its knn_acc "
                  f"uses all {row['points'] - 1} others")
    for method, seconds in result["seconds"].items():
        print(f"{method}: {seconds:.1f} s")
    print(f"wrote {len(result['written'])} files to {result['output']}")


def _segment_predict(args) -> None:
    from dlcv.segment import predict

    count = predict(args.checkpoint, args.images, args.output, tta=args.tta, overwrite=args.overwrite)
    print(f"wrote {count} masks to {args.output}")


def _segment_evaluate(args) -> None:
    import math

    from dlcv.data.masks import CLASS_NAMES
    from dlcv.segment import evaluate

    result = evaluate(args.predictions, args.labels, unmapped=args.unmapped, breakdown=args.breakdown,
                      overwrite=args.overwrite)
    for path, count in sorted(result["unmapped"].items()):
        print(f"note: {path}: {count} pixel(s) of a colour in no class (red), counted as Unknown")
    for i, iou in enumerate(result["iou"]):
        shown = "nan" if math.isnan(iou) else f"{iou:1.5f}"
        print(f"class #{i} : {shown}  ({CLASS_NAMES[i]})")
    if result["breakdown"] is not None:
        print(f"per-image breakdown: {result['breakdown']}")
    print(f"images: {result['images']}")
    print(f"mean_iou: {result['mean_iou']:.6f}")


def _segment_overlay(args) -> None:
    from dlcv.segment import overlay

    print(f"wrote {overlay(args.image, args.mask, args.output, alpha=args.alpha, overwrite=args.overwrite)}")


def _segment_progress(args) -> None:
    from dlcv.segment import progress

    written = progress(args.run, args.output, overwrite=args.overwrite)
    print("wrote " + ", ".join(str(p) for p in written))


def _sam_masks(args) -> None:
    from dlcv.sam import masks

    only = tuple(i.strip() for i in (args.only or "").split(",") if i.strip())
    summary = masks(args.checkpoint, args.images, args.output, model_type=args.model, config=args.config,
                    overrides=tuple(args.set), overwrite=args.overwrite, only=only)
    print(f"{summary['images']} images, {summary['masks_per_image']:.1f} masks and "
          f"{summary['seconds_per_image']:.1f} s per image on {summary['device']} ({summary['model_type']})")
    print(f"wrote {args.output} (NNNN.json, NNNN_overlay.png, figure.png, summary.json)")


def _sam_refine(args) -> None:
    from dlcv.sam import refine

    result = refine(args.predictions, args.output, checkpoint=args.checkpoint, images=args.images,
                    sam_masks=args.sam_masks, labels=args.labels, model_type=args.model, config=args.config,
                    overrides=tuple(args.set), overwrite=args.overwrite)
    changed = sum(v["pixels_changed"] for v in result["per_image"].values())
    print(f"refined {result['images']} masks ({changed} pixels changed) into {args.output}")
    if "mean_iou_before" in result:
        print(f"mean_iou before: {result['mean_iou_before']:.6f}")
        print(f"mean_iou after:  {result['mean_iou_after']:.6f}")


def _models(args) -> None:
    from dlcv.models.registry import KINDS, list_models, model_summary

    for kind in KINDS:
        names = list_models(kind)
        print(f"{kind}:")
        width = max(len(n) for n in names)
        for name in names:
            print(f"  {name:<{width}}  {model_summary(name)}")


def _keys(args) -> None:
    from dlcv.recipes import describe_keys, keys_markdown

    if args.markdown:
        print(keys_markdown([args.task] if args.task else None), end="")
        return
    if args.task is None:
        raise DlcvError(f"dlcv keys: give a task ({', '.join(RECIPES)}), or --markdown for all of them")
    rows = describe_keys(RECIPES[args.task])
    width = max(len(key) for key, *_ in rows)
    for key, default, wants, meaning in rows:
        print(f"{key:<{width}}  {default}  ({wants})  {meaning}" if wants else f"{key:<{width}}  {default}  {meaning}")


def _report(args) -> None:
    from dlcv.report import build_report
    from dlcv.report.answers import questions, read_answers, template
    from dlcv.report.pdf import HOW_TO_GET

    if (args.answers or args.answers_template) and args.year is None:
        raise DlcvError("--answers and --answers-template go with --year YEAR (each year asks its own questions)")
    if args.answers_template:
        from dlcv.io import atomic_write, check_output_file

        with atomic_write(check_output_file(args.answers_template, args.overwrite)) as handle:
            handle.write(template(args.year))
        print(f"wrote {args.answers_template}: the {args.year} report's questions; write your answers under them, "
              f"then: dlcv report --year {args.year} --answers {args.answers_template}")
        return
    answers = read_answers(args.answers, args.year) if args.answers else None
    result = build_report(args.runs, args.output, overwrite=args.overwrite, year=args.year, pdf=not args.no_pdf,
                          answers=answers)
    if answers is not None:
        empty = answers.empty(args.year)
        total = len(questions(args.year))
        print(f"answers: {total - len(empty)} of the {args.year} report's {total} questions answered"
              + (f"; left empty: {', '.join(empty)}" if empty else ""))
    for note in result["skipped"]:
        print(f"note: left out {note}")
    print(f"report of {len(result['runs'])} run(s) ({', '.join(result['sections'])}) in {result['seconds']:.0f} s")
    print(f"open {result['index']} (self-contained); Markdown: {result['markdown']}")
    if result["pdf"]:
        print(f"PDF: {result['pdf']}")
    elif result["pdf_problem"]:
        print(f"note: no report.pdf: {result['pdf_problem']}; print index.html from any browser, or pass --no-pdf")
    elif not args.no_pdf:
        print(f"note: no Chromium found, so no report.pdf: {HOW_TO_GET}")


def _handin(args) -> None:
    from dlcv.handin import handin

    given = _pairs(args.checkpoint, "--checkpoint", "p1=runs/p1_model_b/best.ckpt")
    urls = _pairs(args.url, "--url", "seg=https://www.dropbox.com/s/.../seg.pth?dl=1")
    rows = handin(args.year, args.output, runs=args.runs, given=given, overwrite=args.overwrite, urls=urls)
    width = max(len(name) for name, *_ in rows)
    for name, size, source in rows:
        shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
        print(f"  {name:<{width}}  {shown:>9}  from {source}")
    print(f"wrote {args.output}: {len(rows)} files, {sum(size for _, size, _ in rows) / 1e6:.1f} MB; it needs only "
          "torch, torchvision, numpy and Pillow: bash hw1_1.sh ... from any folder")
    unfetched = sorted(name for name, *_ in rows if name.endswith(".pth") and name[:-4] not in urls)
    if unfetched:
        print(f"note: no --url NAME=URL for {', '.join(unfetched)}: the download script says where to put each")


def _pairs(items: list[str], option: str, example: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping; one line for a malformed one."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DlcvError(f"{option} {item!r}: expected NAME=VALUE, e.g. {example}")
        pairs[name] = value
    return pairs


def _export(args) -> None:
    from dlcv.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.output, overwrite=args.overwrite)
    size = "any input size" if result.get("any_size") else f"{result['side']}x{result['side']} inputs"
    print(f"wrote {result['output']} ({args.format}, {size}); max difference from the checkpoint's outputs: "
          f"{result['difference']:.2e}")


def _launch(args) -> None:
    from dlcv.launch import launch, torchrun_argv

    command = args.dlcv_command[1:] if args.dlcv_command[:1] == ["--"] else args.dlcv_command
    argv = torchrun_argv(command, args.nnodes, args.node_rank, args.nproc_per_node, args.master, args.join_timeout)
    launch(argv, args.nnodes, args.join_timeout)


def _demo(args) -> None:
    from dlcv.demo import run_demo

    run_demo(args.output, overwrite=args.overwrite)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlcv", description="The computer-vision work of DLCV HW1, end to end.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(commands, "demo", _demo, "synthesise the default data, train, predict and evaluate at small scale")
    demo.add_argument("--output", default="demo", help="folder for the data, runs and results (default: demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo in that folder")

    report = _command(commands, "report", _report, "every table and figure of the homework from run folders, as a page")
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

    hand = _command(commands, "handin", _handin, "gather a year's course scripts and the checkpoints they load "
                    "(weights only) into one folder")
    hand.add_argument("--year", type=int, required=True, help="the homework's year: 2021, 2022, 2023 or 2024")
    hand.add_argument("--output", required=True, help="folder to write (new or empty)")
    hand.add_argument("--runs", default="runs", help="folder of run folders holding the checkpoints (default: runs)")
    hand.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                      help="the checkpoint for p1, seg or ssl instead of the first of the script's runs that exists")
    hand.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                      help="where the download script fetches NAME's weights (p1, ssl, seg), e.g. a Google Drive or "
                           "Dropbox link (repeatable)")
    hand.add_argument("--overwrite", action="store_true", help="replace an earlier hand-in folder")

    launch = _command(commands, "launch", _launch, "run a training command in several processes or on several "
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

    data = _group(commands, "data", "data sets")
    synth = _command(data, "synth", _synth, "write the embedded default data in the course's formats")
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
    split = _command(data, "transfer-split", _transfer_split, "the p1 images as Mini-ImageNet (classes 0-24) and "
                     "Office-Home (classes 25-49) for the self-supervised problem")
    split.add_argument("--p1", required=True, help="the p1_data folder (train_50/, val_50/)")
    split.add_argument("--output", required=True, help="folder to write mini/, office/ and supervised/ into")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")

    classify = _group(commands, "classify", "Problem 1: image classification")
    fit = _command(classify, "fit", _fit, "train a classifier from a recipe")
    fit.add_argument("--config", required=True, help="recipe YAML, e.g. configs/p1/model_a.yaml")
    fit.add_argument("--data", required=True, help="folder holding train_50/ and val_50/ (p1_data)")
    _run_options(fit)

    predict = _command(classify, "predict", _predict, "write filename,label for every image of a folder")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--output", required=True, help="CSV to write")
    predict.add_argument("--id-column", default="filename", choices=("filename", "image_id"),
                         help="name of the first column (image_id: the 2021 format)")
    predict.add_argument("--ensemble", type=int, default=1, metavar="K",
                         help="average the run's K best checkpoints (needs train.save_top_k >= K)")
    _tta_option(predict, TTA_MODES)
    _file_overwrite(predict)

    evaluate = _command(classify, "evaluate", _evaluate, "accuracy of a predictions CSV against labels")
    evaluate.add_argument("--predictions", required=True, help="CSV with filename (or image_id) and label")
    evaluate.add_argument("--labels", required=True, help="filename,label CSV, or an image folder named by class")
    evaluate.add_argument("--confusion", help="confusion-matrix figure to write (default: beside the predictions)")
    _file_overwrite(evaluate)

    embed = _group(commands, "embed", "learned representations")
    embed_plot = _command(embed, "plot", _embed_plot, "PCA / t-SNE panels of a run's snapshots or of feature files")
    embed_plot.add_argument("sources", nargs="+", metavar="RUN_OR_NPZ",
                            help="a run folder (its embeddings/ snapshots) or .npz files with features and labels")
    embed_plot.add_argument("--method", default="pca,tsne", help="pca, tsne or both (default: pca,tsne)")
    embed_plot.add_argument("--output", help="folder for the figures (default: RUN/figures or beside the files)")
    embed_plot.add_argument("--k", type=int, default=10, help="neighbours for the kNN accuracy (default: 10)")
    embed_plot.add_argument("--perplexity", type=float, default=30.0)
    embed_plot.add_argument("--training-subset", action="store_true",
                            help="plot the run's training-subset snapshots instead of its validation ones")

    segment = _group(commands, "segment", "Problem 2: semantic segmentation of satellite images")
    seg_fit = _command(segment, "fit", _fit, "train a segmentation model from a recipe")
    seg_fit.add_argument("--config", required=True, help="recipe YAML, e.g. configs/seg/cpu.yaml")
    seg_fit.add_argument("--data", required=True, help="folder holding train/ and validation/ (p2_data)")
    _run_options(seg_fit)

    seg_predict = _command(segment, "predict", _segment_predict,
                           "write NNNN_mask.png for every NNNN_sat.jpg of a folder")
    seg_predict.add_argument("--checkpoint", required=True)
    seg_predict.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    seg_predict.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    _tta_option(seg_predict, SEG_TTA_MODES)
    seg_predict.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")

    seg_eval = _command(segment, "evaluate", _segment_evaluate, "mIoU of predicted masks, as the course grades it")
    seg_eval.add_argument("--predictions", required=True, help="folder of predicted NNNN_mask.png")
    seg_eval.add_argument("--labels", required=True, help="folder of ground-truth NNNN_mask.png")
    seg_eval.add_argument("--unmapped", choices=("unknown", "error"), default="unknown",
                          help="colours in no class (red): count as Unknown (default) or refuse the mask")
    seg_eval.add_argument("--breakdown", help="CSV to write with each image's per-class IoU")
    _file_overwrite(seg_eval)

    seg_overlay = _command(segment, "overlay", _segment_overlay, "draw a mask over its satellite image")
    seg_overlay.add_argument("--image", required=True)
    seg_overlay.add_argument("--mask", required=True)
    seg_overlay.add_argument("--output", required=True, help="PNG to write")
    seg_overlay.add_argument("--alpha", type=float, default=0.45, help="opacity of the mask colours (0..1)")
    _file_overwrite(seg_overlay)

    seg_progress = _command(segment, "progress", _segment_progress, "grid of a run's predicted masks through training")
    seg_progress.add_argument("run", help="run folder")
    seg_progress.add_argument("--output",
                              help="figure path without suffix (default: RUN/figures/masks_through_training)")
    _file_overwrite(seg_progress)

    sam = _group(commands, "sam", "Segment Anything on the satellite images")
    sam_masks = _command(sam, "masks", _sam_masks,
                         "SAM's automatic masks: COCO RLE JSON and an overlay per image, a figure")
    sam_masks.add_argument("--checkpoint", required=True, help="local SAM checkpoint, e.g. sam_vit_b_01ec64.pth")
    sam_masks.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    sam_masks.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    sam_masks.add_argument("--only", metavar="ID,ID,...", help="these images of --images alone, e.g. the report's "
                           "three: 0013,0062,0104 (minutes each on a CPU)")
    sam_refine = _command(sam, "refine", _sam_refine, "set each SAM region of predicted masks to its majority class")
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

    ssl = _group(commands, "ssl", "self-supervised pre-training (BYOL) and the transfer settings A-E")

    ssl_pretrain = _command(ssl, "pretrain", _ssl_pretrain,
                            "BYOL on a folder of unlabelled images; exports backbone.pt")
    ssl_pretrain.add_argument("--config", help="BYOL recipe, e.g. configs/ssl/byol_resnet50.yaml")
    ssl_pretrain.add_argument("--data", required=True, help="folder of unlabelled images (mini/train)")
    ssl_pretrain.add_argument("--monitor", help="kNN accuracy per epoch on a labelled folder: Office-Home (train/, "
                              "val/, CSVs) or p1 layout (train_50/, val_50/), e.g. the transfer split's supervised/")
    _run_options(ssl_pretrain)

    ssl_finetune = _command(ssl, "finetune", _ssl_finetune, "fine-tune one setting (A-E) on Office-Home")
    ssl_finetune.add_argument("--setting", required=True, help="A (none/full), B (supervised/full), C (ours/full), "
                              "D (supervised/frozen), E (ours/frozen)")
    ssl_finetune.add_argument("--backbone",
                              help="backbone file (B, D: pretrain_model_SL.pt; C, E: runs/.../backbone.pt)")
    ssl_finetune.add_argument("--data", required=True, help="the Office-Home folder (train/, val/, train.csv, val.csv)")
    ssl_finetune.add_argument("--config", help="fine-tuning recipe (default: the built-in one, R1's)")
    _run_options(ssl_finetune)

    ssl_table = _command(ssl, "table", _ssl_table, "run or reuse settings A-E from one recipe; write the table")
    ssl_table.add_argument("--config", required=True, help="settings recipe, e.g. configs/ssl/settings.yaml")
    ssl_table.add_argument("--data", help="folder holding mini/train, office/ (and supervised/ or the "
                           "supervised backbone file); default: the recipe's data.root")
    ssl_table.add_argument("--runs-dir", default="runs", help="where the table's folder goes (default: runs)")
    ssl_table.add_argument("--name", help="the table's folder name (default: the recipe's name)")
    ssl_table.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a settings key, e.g. --set settings=[A,C] (repeatable)")
    _budget_option(ssl_table, "budget; each run gets its share of what is left when it starts")

    ssl_predict = _command(ssl, "predict", _ssl_predict, "write id,filename,label for every row of an Office-Home CSV")
    ssl_predict.add_argument("--checkpoint", required=True)
    ssl_predict.add_argument("--csv", required=True, help="id,filename[,label] CSV; its order is kept")
    ssl_predict.add_argument("--images", required=True, help="folder of the CSV's images")
    ssl_predict.add_argument("--output", required=True, help="CSV to write")
    _tta_option(ssl_predict, TTA_MODES)
    _file_overwrite(ssl_predict)

    ssl_export = _command(ssl, "export", _ssl_export,
                          "a resnet_transfer checkpoint's trunk as a plain torchvision state_dict")
    ssl_export.add_argument("--checkpoint", required=True)
    ssl_export.add_argument("--output", required=True, help="file to write (e.g. pretrain_model_SL.pt)")
    _file_overwrite(ssl_export)

    export = _command(commands, "export", _export, "a checkpoint's model as plain torch code or ONNX, checked "
                      "against the checkpoint")
    export.add_argument("checkpoint", help="a classification or segmentation checkpoint (best.ckpt)")
    export.add_argument("--format", choices=("torch", "onnx"), default="torch",
                        help="torch: a folder of model.py and weights.pth (torch alone runs it); onnx: one file")
    export.add_argument("--output", required=True, help="the folder (torch) or file (onnx) to write")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export (or a file of yours)")

    _command(commands, "models", _models, "list the model names a recipe can use")
    keys = _command(commands, "keys", _keys, "list every recipe key of a task: its default, rule and meaning")
    keys.add_argument("task", nargs="?", choices=list(RECIPES))
    keys.add_argument("--markdown", action="store_true", help="Markdown tables, one per section (of every task without "
                      "one): the tables of docs/configuration.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``dlcv`` command; a ``DlcvError`` is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except DlcvError as exc:
        print(f"dlcv: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (``dlcv keys classify | head``): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush into the closed pipe at exit
        return 0
    except OSError as exc:  # a file the checks could not foresee (permissions, a full disk, a vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dlcv: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlcv: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a multi-process run whose other process stopped: the same line in each
        from dlcv.runtime import lost_peer

        if not lost_peer(exc):
            raise
        print(f"dlcv: error: {lost_peer(exc)}", file=sys.stderr)
        return 1
    if "torch.distributed" in sys.modules:  # torch was loaded: close a multi-process run's group, if any
        from dlcv.runtime import end_process_group

        end_process_group()
    return 0
