"""``python -m nni_pl.experiment._daemon STORE_URL ID``: the manager of a detached experiment."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from nni_pl.experiment import store as st
    from nni_pl.experiment._locate import Located
    from nni_pl.experiment.experiment import Experiment

    url, experiment_id = argv
    store = st.Store(url)
    exp = Experiment._from_located(Located(store, store.get_experiment(experiment_id)))
    status = exp.run(display=False).get_status()
    return 0 if status in (st.EXP_DONE, st.EXP_STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
