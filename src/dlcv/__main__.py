"""``python -m dlcv``: the ``dlcv`` command line."""

from dlcv.cli.main import main

raise SystemExit(main())
