"""``python -m crowdmesh ARGS``: the ``crowdmesh`` command (see :mod:`crowdmesh.daemon.main`)."""

import sys

from crowdmesh.daemon.main import main

if __name__ == "__main__":
    sys.exit(main())
