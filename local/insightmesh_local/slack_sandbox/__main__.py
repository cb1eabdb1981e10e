"""``python -m insightmesh_local.slack_sandbox --port 3001``: the sandbox, standalone."""

import sys

from insightmesh_local.slack_sandbox.server import main

sys.exit(main())
