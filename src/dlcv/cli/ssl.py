"""``dlcv ssl``: BYOL pre-training and the transfer settings A-E."""

from __future__ import annotations

from dlcv.cli import options
from dlcv.recipes import TTA_MODES


def add(commands) -> None:
    """Add ``dlcv ssl`` (BYOL and the settings A-E) to ``commands``."""
    ssl = options.group(commands, "ssl", "self-supervised pre-training (BYOL) and the transfer settings A-E")

    ssl_pretrain = options.command(ssl, "pretrain", pretrain,
                                   "BYOL on a folder of unlabelled images; exports backbone.pt")
    ssl_pretrain.add_argument("--config", help="BYOL recipe, e.g. configs/ssl/byol_resnet50.yaml")
    ssl_pretrain.add_argument("--data", required=True, help="folder of unlabelled images (mini/train)")
    ssl_pretrain.add_argument("--monitor", help="kNN accuracy per epoch on a labelled folder: Office-Home (train/, "
                              "val/, CSVs) or p1 layout (train_50/, val_50/), e.g. the transfer split's supervised/")
    options.run_options(ssl_pretrain)

    ssl_finetune = options.command(ssl, "finetune", finetune, "fine-tune one setting (A-E) on Office-Home")
    ssl_finetune.add_argument("--setting", required=True, help="A (none/full), B (supervised/full), C (ours/full), "
                              "D (supervised/frozen), E (ours/frozen)")
    ssl_finetune.add_argument("--backbone",
                              help="backbone file (B, D: pretrain_model_SL.pt; C, E: runs/.../backbone.pt)")
    ssl_finetune.add_argument("--data", required=True, help="the Office-Home folder (train/, val/, train.csv, val.csv)")
    ssl_finetune.add_argument("--config", help="fine-tuning recipe (default: the built-in one, R1's)")
    options.run_options(ssl_finetune)

    ssl_table = options.command(ssl, "table", table, "run or reuse settings A-E from one recipe; write the table")
    ssl_table.add_argument("--config", required=True, help="settings recipe, e.g. configs/ssl/settings.yaml")
    ssl_table.add_argument("--data", help="folder holding mini/train, office/ (and supervised/ or the "
                           "supervised backbone file); default: the recipe's data.root")
    ssl_table.add_argument("--runs-dir", default="runs", help="where the table's folder goes (default: runs)")
    ssl_table.add_argument("--name", help="the table's folder name (default: the recipe's name)")
    ssl_table.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a settings key, e.g. --set settings=[A,C] (repeatable)")
    options.budget_option(ssl_table, "budget; each run gets its share of what is left when it starts")

    ssl_predict = options.command(ssl, "predict", predict,
                                  "write id,filename,label for every row of an Office-Home CSV")
    ssl_predict.add_argument("--checkpoint", required=True)
    ssl_predict.add_argument("--csv", required=True, help="id,filename[,label] CSV; its order is kept")
    ssl_predict.add_argument("--images", required=True, help="folder of the CSV's images")
    ssl_predict.add_argument("--output", required=True, help="CSV to write")
    options.tta_option(ssl_predict, TTA_MODES)
    options.autocast_option(ssl_predict)
    options.file_overwrite(ssl_predict)

    ssl_export = options.command(ssl, "export", export,
                                 "a resnet_transfer checkpoint's trunk as a plain torchvision state_dict")
    ssl_export.add_argument("--checkpoint", required=True)
    ssl_export.add_argument("--output", required=True, help="file to write (e.g. pretrain_model_SL.pt)")
    options.file_overwrite(ssl_export)


def pretrain(args) -> None:
    from dlcv.ssl import pretrain

    pretrain(args.config, args.data, monitor=args.monitor, **options.run_kwargs(args))


def finetune(args) -> None:
    from dlcv.ssl import finetune

    finetune(args.setting, args.data, backbone=args.backbone, config=args.config, **options.run_kwargs(args))


def table(args) -> None:
    from dlcv.ssl_table import table

    folder = table(args.config, args.data, runs_dir=args.runs_dir, name=options.run_name(args),
                   overrides=options.overrides(args, "budget"))
    print((folder / "table.md").read_text())
    print(f"wrote {folder / 'table.md'}, {folder / 'table.csv'}, {folder / 'table.json'}")


def predict(args) -> None:
    from dlcv.ssl import predict

    count = predict(args.checkpoint, args.csv, args.images, args.output, tta=args.tta, overwrite=args.overwrite,
                    autocast=args.autocast)
    print(f"wrote {count} predictions to {args.output}")


def export(args) -> None:
    from dlcv.ssl import export

    print(f"wrote {export(args.checkpoint, args.output, overwrite=args.overwrite)}")
