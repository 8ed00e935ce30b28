import sys

from nni_pl.cli.main import main

sys.exit(main())
