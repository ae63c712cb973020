"""``python -m scaling.cli ...``: the ``embscale`` command without the console script."""

import sys

from scaling.cli import main

sys.exit(main())
