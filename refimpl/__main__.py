"""``python -m refimpl``: see ``python -m refimpl --help``."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
