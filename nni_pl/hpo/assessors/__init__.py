"""The built-in assessors, importable by class (the experiment looks them up by NNI name).

Example:
    >>> from nni_pl.hpo.assessors import MedianstopAssessor
    >>> assessor = MedianstopAssessor(optimize_mode="maximize", start_step=3)
"""

from nni_pl.hpo.assessors.medianstop import MedianstopAssessor

__all__ = ["MedianstopAssessor"]
