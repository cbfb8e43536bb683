"""``python -m packager.cli``: the same as the ``stac-packager`` script."""

import sys

from packager.cli.main import main

sys.exit(main())
