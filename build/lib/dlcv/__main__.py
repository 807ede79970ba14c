from dlcv.cli.main import main

raise SystemExit(main())
