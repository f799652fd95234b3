"""``python -m ov_causal``: the same as the ``ov-causal`` command (``generate`` when no command is given)."""

import sys

from .cli import main

sys.exit(main())
