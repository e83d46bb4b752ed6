"""``python -m jobs WORKSPACE_DIR JOB_ID``: run one recorded job in this process."""

import sys

from jobs.runner import main

sys.exit(main())
