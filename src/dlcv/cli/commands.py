"""What each ``dlcv`` command runs: parsed arguments in, one library call, its lines printed.

Each function imports what it needs when it runs: ``dlcv --help`` and ``dlcv classify evaluate`` start without torch.
"""

from __future__ import annotations

from dlcv.errors import DlcvError
from dlcv.recipes import RECIPES, describe_keys, keys_markdown


def synth(args) -> None:
    """``dlcv data synth``: check the sizes of every set asked for, then write the sets."""
    from dlcv.data.synth import check_p1_sizes, check_p2_sizes, synth_p1, synth_p2, synth_ssl

    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    if not problems or any(p not in ("p1", "p2", "ssl") for p in problems):
        raise DlcvError(f"--problems {args.problems!r}: choose among p1, p2, ssl (comma-separated)")
    if "p1" in problems:  # every set's sizes before the first is written
        check_p1_sizes(args.classes, args.train_per_class, args.val_per_class)
    if "p2" in problems:
        check_p2_sizes(args.p2_train, args.p2_validation, args.p2_size)
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


def transfer_split(args) -> None:
    from dlcv.data.transfer import write_transfer_split

    counts = write_transfer_split(args.p1, args.output, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.output}: mini/train {counts['mini']} unlabelled images (classes 0-24); office/train "
          f"{counts['office_train']} and office/val {counts['office_val']} (classes 25-49 as 0-24); supervised/ "
          f"{counts['supervised_train']} + {counts['supervised_val']} labelled images of classes 0-24")


def models(args) -> None:
    from dlcv.models.registry import MODEL_TASKS, list_models, model_summary

    for task in MODEL_TASKS:
        names = list_models(task)
        print(f"{task}:")
        width = max(len(n) for n in names)
        for name in names:
            print(f"  {name:<{width}}  {model_summary(name)}")


def keys(args) -> None:
    """``dlcv keys``: print every key of a task's recipe, or Markdown tables of them."""
    if args.markdown:
        print(keys_markdown([args.task] if args.task else None), end="")
        return
    if args.task is None:
        raise DlcvError(f"dlcv keys: give a task ({', '.join(RECIPES)}), or --markdown for all of them")
    rows = describe_keys(RECIPES[args.task])
    width = max(len(key) for key, *_ in rows)
    for key, default, wants, meaning in rows:
        print(f"{key:<{width}}  {default}  ({wants})  {meaning}")


def report(args) -> None:
    """``dlcv report``: write the answers template, or build the report and say where it is."""
    from dlcv.report import build_report
    from dlcv.report.answers import questions, read_answers, template
    from dlcv.report.pdf import CJK_PACKAGE, HOW_TO_GET, missing_fonts, pdf_pages

    if (args.answers or args.answers_template) and args.year is None:
        raise DlcvError("--answers and --answers-template go with --year YEAR (each year asks its own questions)")
    if args.answers_template:
        from dlcv.files import atomic_write
        from dlcv.io import check_output_file, record_output_file

        with atomic_write(check_output_file(args.answers_template, args.overwrite)) as handle:
            handle.write(template(args.year))
        record_output_file(args.answers_template)
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
        print(f"PDF: {result['pdf']} ({pdf_pages(result['pdf'])} pages)")
        written = "" if answers is None else " ".join([answers.name, answers.student_id, *answers.by_key.values()])
        missing = missing_fonts(written)
        if missing:
            print(f"note: no font on this machine covers the answers' {' and '.join(missing)}, so report.pdf shows "
                  f"those characters as empty boxes: install one (Debian, Ubuntu and Colab: apt-get install "
                  f"{CJK_PACKAGE}) and run this again")
    elif result["pdf_problem"]:
        print(f"note: no report.pdf: {result['pdf_problem']}; print index.html from any browser, or pass --no-pdf")
    elif not args.no_pdf:
        print(f"note: no Chromium found, so no report.pdf: {HOW_TO_GET}")


def handin(args) -> None:
    """``dlcv handin``: gather the year's scripts and checkpoints, and list the files written."""
    from dlcv.handin import COURSE_TORCH, handin

    given = _pairs(args.checkpoint, "--checkpoint", "p1=runs/p1_model_b/best.ckpt")
    urls = _pairs(args.url, "--url", "seg=https://www.dropbox.com/s/.../seg.pth?dl=1")
    rows = handin(args.year, args.output, runs=args.runs, given=given, overwrite=args.overwrite, urls=urls,
                  half=args.half, autocast=args.autocast)
    width = max(len(name) for name, *_ in rows)
    for name, size, source in rows:
        shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
        print(f"  {name:<{width}}  {shown:>9}  from {source}")
    print(f"wrote {args.output}: {len(rows)} files, {sum(size for _, size, _ in rows) / 1e6:.1f} MB; it needs only "
          f"torch {COURSE_TORCH[args.year]} or later (the {args.year} course's), numpy and Pillow: bash hw1_1.sh ... "
          "from any folder")
    unfetched = sorted(name for name, *_ in rows if name.endswith(".pth") and name[:-4] not in urls)
    if unfetched:
        print(f"note: no --url NAME=URL for {', '.join(unfetched)}: the download script says where to put each")


def _pairs(items: list[str], option: str, example: str) -> dict[str, str]:
    """Return ``NAME=VALUE`` options as a mapping; ``DlcvError`` for a malformed one, with ``example``."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DlcvError(f"{option} {item!r}: expected NAME=VALUE, e.g. {example}")
        pairs[name] = value
    return pairs


def export(args) -> None:
    from dlcv.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.output, overwrite=args.overwrite,
                               torch_version=args.torch)  # None: the course machine's
    size = "any input size" if result["any_size"] else f"{result['side']}x{result['side']} inputs"
    batch = "any batch" if result["batch"] is None else f"batches of {result['batch']} images only"
    runs_on = f", torch {result['torch']} or later" if args.format == "torch" else ""
    print(f"wrote {result['output']} ({args.format}, {size}, {batch}{runs_on}); max difference from the "
          f"checkpoint's outputs: {result['difference']:.2e}")


def launch(args) -> None:
    from dlcv.launch import launch, torchrun_argv

    command = args.dlcv_command[1:] if args.dlcv_command[:1] == ["--"] else args.dlcv_command
    argv = torchrun_argv(command, args.nnodes, args.node_rank, args.nproc_per_node, args.master, args.join_timeout)
    launch(argv, args.nnodes, args.join_timeout)


def demo(args) -> None:
    from dlcv.demo import run_demo

    run_demo(args.output, overwrite=args.overwrite)
