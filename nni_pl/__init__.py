"""nni-pl: hyperparameter optimisation, NAS and compression for PyTorch Lightning.

Trial code talks to the experiment through the functions re-exported here, exactly as with NNI
(``import nni_pl as nni`` is a drop-in replacement for ``import nni`` in trial scripts)::

    import nni_pl as nni

    params = nni.get_next_parameter()          # {} when run standalone
    for epoch in range(10):
        nni.report_intermediate_result(acc)
    nni.report_final_result(acc)

Importing this package is cheap on purpose: it never imports torch, lightning or numpy.
"""

from nni_pl.errors import NoMoreTrialError
from nni_pl.serialization import dump, load, trace
from nni_pl.trial import (
    get_current_parameter,
    get_experiment_id,
    get_next_parameter,
    get_output_dir,
    get_sequence_id,
    get_trial_budget,
    get_trial_id,
    report_final_result,
    report_intermediate_result,
    should_stop,
)

__version__ = "0.1.0"

__all__ = [
    "NoMoreTrialError",
    "__version__",
    "dump",
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_output_dir",
    "get_sequence_id",
    "get_trial_budget",
    "get_trial_id",
    "load",
    "report_final_result",
    "report_intermediate_result",
    "should_stop",
    "trace",
]
