import sys

from pyfaid.reconstruct.cli import main

sys.exit(main())
