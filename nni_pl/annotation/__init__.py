"""NNI annotations (``useAnnotation: true``): tuned values written as string statements in plain trial code.

::

    '''@nni.variable(nni.choice(0.1, 0.01, 0.001), name=learning_rate)'''
    learning_rate = 0.1
    '''@nni.function_choice(max_pool(h, 2), avg_pool(h, 2), name=max_pool)'''
    h = max_pool(h, 2)
    '''@nni.report_final_result(accuracy)'''

The file runs as it is without nni-pl (the annotations are only strings). With ``useAnnotation: true`` the
experiment generates the search space from the annotations of every ``.py`` file of ``trialCodeDirectory``
(:func:`generate_search_space`, NNI's keys ``<module>/<name>/<function>``), rewrites the files with ``ast`` into a
copy in the experiment folder (:func:`expand_annotations`), and runs the trial command there. The rewritten code
calls :func:`given`, :func:`value` and :func:`index`, which read ``nni_pl.get_next_parameter()``.

Example:
    >>> from nni_pl.annotation import transform_source
    >>> found = transform_source(
    ...     "'''@nni.variable(nni.loguniform(1e-4, 0.1), name=lr)'''\\nlr = 0.01\\n", "train")
    >>> found.space
    {'train/lr/loguniform': {'_type': 'loguniform', '_value': [0.0001, 0.1]}}
"""

from nni_pl.annotation._code import (
    MARKER,
    expand_annotations,
    generate_search_space,
    prepare_trial_code,
    read_annotations,
)
from nni_pl.annotation._transform import (
    ANNOTATIONS,
    SAMPLING_FUNCTIONS,
    AnnotationError,
    FileAnnotations,
    transform_source,
)
from nni_pl.annotation.runtime import given, index, value

__all__ = [
    "ANNOTATIONS",
    "MARKER",
    "SAMPLING_FUNCTIONS",
    "AnnotationError",
    "FileAnnotations",
    "expand_annotations",
    "generate_search_space",
    "given",
    "index",
    "prepare_trial_code",
    "read_annotations",
    "transform_source",
    "value",
]
