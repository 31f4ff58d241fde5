"""``python -m rlbook ...`` runs the ``rlbook`` command line (:mod:`rlbook.cli`)."""

import sys

from rlbook.cli import main

if __name__ == "__main__":
    sys.exit(main())
