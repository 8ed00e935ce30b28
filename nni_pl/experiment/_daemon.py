"""``python -m nni_pl.experiment._daemon STORE_URL ID [--port N --host H]``: the manager of a detached experiment.

The dashboard token, if any, comes in ``$NNI_PL_WEBUI_TOKEN`` (not on the command line, where ``ps`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str]) -> int:
    from nni_pl.experiment import store as st
    from nni_pl.experiment._locate import Located
    from nni_pl.experiment.experiment import Experiment

    parser = argparse.ArgumentParser(prog="nni_pl.experiment._daemon")
    parser.add_argument("url")
    parser.add_argument("experiment_id")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    store = st.Store(args.url)
    exp = Experiment._from_located(Located(store, store.get_experiment(args.experiment_id)))
    token = os.environ.pop("NNI_PL_WEBUI_TOKEN", None) or None
    status = exp.run(display=False, port=args.port, host=args.host, token=token).get_status()
    return 0 if status in (st.EXP_DONE, st.EXP_STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
