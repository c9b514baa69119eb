import sys

from protoseg.cli import main

sys.exit(main())
