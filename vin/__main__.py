"""``python -m vin``: the ``vin`` command."""

from .cli import main

raise SystemExit(main())
