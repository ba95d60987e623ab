"""`python -m stc.eval`: see `stc.eval.cli`."""

import sys

from .cli import main

sys.exit(main())
