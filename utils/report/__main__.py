"""``python -m utils.report [--write | --check]``: see ``utils.report.cli``."""
import sys

from utils.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
