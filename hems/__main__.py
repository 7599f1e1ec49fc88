"""``python -m hems`` runs the ``hems`` command."""

import sys

from hems.cli import main

sys.exit(main())
