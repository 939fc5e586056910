"""`python -m posekit.cli ...` runs the `posekit` command."""

import sys

from posekit.cli import main

sys.exit(main())
