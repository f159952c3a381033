"""Entry point of the self-contained bundle (PyInstaller runs this as ``__main__``)."""

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
