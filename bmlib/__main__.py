"""``python -m bmlib ...`` entry point."""

from bmlib.cli import main

raise SystemExit(main())
