import sys

from pyfaid.evaluate.cli import main

sys.exit(main())
