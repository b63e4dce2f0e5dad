import sys

from coinfeat.cli import main

sys.exit(main())
