"""`python -m lazyreg.cli`, the same as the `lazyreg` command."""

import sys

from lazyreg.cli import main

sys.exit(main())
