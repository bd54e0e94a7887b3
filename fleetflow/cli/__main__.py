import sys

from fleetflow.cli.main import main

sys.exit(main())
