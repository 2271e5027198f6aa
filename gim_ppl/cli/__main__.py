"""`python -m gim_ppl.cli`: the `gim-ppl` command."""

import sys

from gim_ppl.cli import main

if __name__ == "__main__":
    sys.exit(main())
