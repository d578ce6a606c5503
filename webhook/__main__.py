"""``python -m webhook`` is the ``pullguard`` command."""

import sys

from webhook.cli import main

sys.exit(main())
