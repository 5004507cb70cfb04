"""``python -m nanosgm``: the ``nanosgm`` command (see :mod:`nanosgm.commands`)."""
import sys

from .commands import main

sys.exit(main())
