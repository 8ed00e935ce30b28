"""``python -m nni_pl.experiment._daemon STORE_URL ID [--port N --host H] [--requested-at T]``: the manager of a
detached experiment.

The dashboard token, if any, comes in ``$NNI_PL_WEBUI_TOKEN`` (not on the command line, where ``ps`` shows it),
and is never printed: this process's output is the experiment's ``log/manager.out``. Literal secrets of the
config (which the store holds as ``***``) come in ``$NNI_PL_SECRET_*`` variables, read once with the config and
then removed from this process's environment. ``--requested-at`` is when the user asked for this start: a stop
recorded after it (``nni-pl stop`` before this manager wrote its pid) is honoured. A failure to start ends with
one line ``error: ...``, which the launching command shows.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback


def main(argv: list[str]) -> int:
    from nni_pl.errors import NniPlError
    from nni_pl.experiment import store as st
    from nni_pl.experiment.experiment import Experiment
    from nni_pl.experiment.locate import Located
    from nni_pl.training.remote_config import SECRET_ENV_PREFIX

    parser = argparse.ArgumentParser(prog="nni_pl.experiment._daemon")
    parser.add_argument("url")
    parser.add_argument("experiment_id")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--requested-at", type=float)
    args = parser.parse_args(argv)
    token = os.environ.pop("NNI_PL_WEBUI_TOKEN", None) or None
    try:
        store = st.Store(args.url)
        exp = Experiment._from_located(Located(store, store.get_experiment(args.experiment_id)))
        # the secrets are in the config now; the trials (local ones too) must not inherit them
        for name in [n for n in os.environ if n.startswith(SECRET_ENV_PREFIX)]:
            del os.environ[name]
        exp._requested_at = args.requested_at
        exp._announce = False
        tuner, assessor = exp._build_algorithms()
        webui = {"port": args.port, "host": args.host, "token": token}
        status = exp._run_manager(tuner, assessor, display=False, webui=webui)
    except NniPlError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0 if status in (st.EXP_DONE, st.EXP_STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
