"""`python -m pykmr`: demo, info, cache (see pykmr.cli)."""

from pykmr.cli import main

raise SystemExit(main())
