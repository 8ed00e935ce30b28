"""NNI's ``FunctionalEvaluator``: any function of the model is the evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nni_pl.nas.evaluator._base import Evaluator, EvaluatorError, import_object

__all__ = ["FunctionalEvaluator"]


class FunctionalEvaluator(Evaluator):
    """Evaluate a model with ``function(model, **kwargs)``.

    The function trains and tests the model and reports through the trial SDK
    (``nni_pl.report_intermediate_result`` / ``nni_pl.report_final_result``), as in NNI. If it returns a
    value and has not reported a final result, the returned value is reported as the final result.
    To reach a trial process the function must be defined at module level of an importable module
    (NNI's "separate file" limitation); it may also be given as ``"package.module:function"``.
    Keyword arguments may be choices (``ValueChoice`` or an ``nni_pl.space`` spec), searched with the
    architecture.

    Args:
        function: the evaluation function (or its import path).
        **kwargs: JSON-able arguments passed to it.

    Example:
        >>> import torch
        >>> def count(model, scale=1):
        ...     return scale * sum(p.numel() for p in model.parameters())
        >>> FunctionalEvaluator(count, scale=2).evaluate(torch.nn.Linear(3, 1))
        8
    """

    def __init__(self, function: Callable[..., Any] | str, **kwargs: Any) -> None:
        super().__init__(function=function, **kwargs)
        self.function = import_object(function, "function") if isinstance(function, str) else function
        if not callable(self.function):
            raise EvaluatorError(f"FunctionalEvaluator: function must be callable, got {function!r}")
        self.kwargs = kwargs

    def evaluate(self, model: Any) -> Any:
        from nni_pl import trial
        from nni_pl.trial import current

        result = self.function(model, **self.kwargs)
        if result is not None and not getattr(current(), "_final_reported", False):
            trial.report_final_result(result)
        return result
