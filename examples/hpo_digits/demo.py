"""`make demo`: tune the digits MLP with NNI's config (TPE + Medianstop, 10 trials) and print the best trial.

Runs `nni-pl launch examples/hpo_digits/config.yml` on the embedded SQLite store (in
~/nni-pl-experiments/<id>/, or $NNI_PL_HOME), then `nni-pl show <id>`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nni_pl.cli.main import main
from nni_pl.experiment import locate

if __name__ == "__main__":
    config = Path(__file__).with_name("config.yml")
    before = {loc.experiment.id for loc in locate.iter_experiments()}
    code = main(["launch", str(config), *sys.argv[1:]])
    created = [loc.experiment.id for loc in locate.iter_experiments() if loc.experiment.id not in before]
    if created:
        print()
        main(["show", created[-1], "--top", "5"])
    sys.exit(code)
