"""``dlcv classify`` (Problem 1) and ``dlcv embed`` (its learned representations)."""

from __future__ import annotations

import math

from dlcv.cli import options
from dlcv.errors import DlcvError
from dlcv.recipes import TTA_MODES


def add(commands) -> None:
    """Add ``dlcv classify`` (Problem 1) and ``dlcv embed`` (its learned representations) to ``commands``."""
    classify = options.group(commands, "classify", "Problem 1: image classification")
    options.fit_command(classify, fit, "train a classifier from a recipe", "configs/p1/model_a.yaml",
                        "folder holding train_50/ and val_50/ (p1_data)")

    predict_cmd = options.command(classify, "predict", predict, "write filename,label for every image of a folder")
    predict_cmd.add_argument("--checkpoint", required=True)
    predict_cmd.add_argument("--images", required=True, help="folder of images")
    predict_cmd.add_argument("--output", required=True, help="CSV to write")
    predict_cmd.add_argument("--id-column", default="filename", choices=("filename", "image_id"),
                             help="name of the first column (image_id: the 2021 format)")
    predict_cmd.add_argument("--ensemble", type=int, default=1, metavar="K",
                             help="average the run's K best checkpoints (needs train.save_top_k >= K)")
    options.tta_option(predict_cmd, TTA_MODES)
    options.autocast_option(predict_cmd)
    options.file_overwrite(predict_cmd)

    evaluate_cmd = options.command(classify, "evaluate", evaluate, "accuracy of a predictions CSV against labels")
    evaluate_cmd.add_argument("--predictions", required=True, help="CSV with filename (or image_id) and label")
    evaluate_cmd.add_argument("--labels", required=True, help="filename,label CSV, or an image folder named by class")
    evaluate_cmd.add_argument("--confusion", help="confusion-matrix figure to write (default: beside the predictions)")
    options.file_overwrite(evaluate_cmd)

    embed = options.group(commands, "embed", "learned representations")
    plot = options.command(embed, "plot", embed_plot, "PCA / t-SNE panels of a run's snapshots or of feature files")
    plot.add_argument("sources", nargs="+", metavar="RUN_OR_NPZ",
                      help="a run folder (its embeddings/ snapshots) or .npz files with features and labels")
    plot.add_argument("--method", default="pca,tsne", help="pca, tsne or both (default: pca,tsne)")
    plot.add_argument("--output", help="folder for the figures (default: RUN/figures or beside the files)")
    plot.add_argument("--k", type=int, default=10, help="neighbours for the kNN accuracy (default: 10)")
    plot.add_argument("--perplexity", type=float, default=30.0)
    plot.add_argument("--training-subset", action="store_true",
                      help="plot the run's training-subset snapshots instead of its validation ones")


def fit(args) -> None:
    from dlcv.classify import fit

    fit(args.config, args.data, **options.run_kwargs(args))


def predict(args) -> None:
    from dlcv.classify import predict

    count = predict(args.checkpoint, args.images, args.output, id_column=args.id_column, ensemble=args.ensemble,
                    tta=args.tta, overwrite=args.overwrite, autocast=args.autocast)
    print(f"wrote {count} predictions to {args.output}")


def evaluate(args) -> None:
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


def embed_plot(args) -> None:
    """``dlcv embed plot``: check ``--perplexity`` and ``--k``, draw the panels and print each snapshot's scores."""
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
    for note in result["notes"]:
        print(f"note: {note}")
    for method, seconds in result["seconds"].items():
        print(f"{method}: {seconds:.1f} s")
    print(f"wrote {len(result['written'])} files to {result['output']}")
