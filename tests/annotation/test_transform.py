"""One file's annotations: the search-space entries (NNI's keys), the rewritten code, and the errors (file:line)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nni_pl.annotation import SAMPLING_FUNCTIONS, AnnotationError, transform_source
from nni_pl.space import SearchSpace


def _find(code: str, module: str = "mnist") -> dict:
    return transform_source(textwrap.dedent(code), module, "mnist.py").space


def _error(code: str, match: str) -> AnnotationError:
    with pytest.raises(AnnotationError, match=match) as info:
        transform_source(textwrap.dedent(code), "mnist", "mnist.py")
    return info.value


# --- the search space -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "entry"),
    [
        ("nni.choice(0.1, 0.01, 0.001)", {"_type": "choice", "_value": [0.1, 0.01, 0.001]}),
        ("nni.randint(1, 5)", {"_type": "randint", "_value": [1, 5]}),
        ("nni.uniform(0.1, 0.9)", {"_type": "uniform", "_value": [0.1, 0.9]}),
        ("nni.quniform(0, 10, 2.5)", {"_type": "quniform", "_value": [0, 10, 2.5]}),
        ("nni.loguniform(1e-5, 0.1)", {"_type": "loguniform", "_value": [1e-5, 0.1]}),
        ("nni.qloguniform(1, 1000, 10)", {"_type": "qloguniform", "_value": [1, 1000, 10]}),
        ("nni.normal(-1, 2)", {"_type": "normal", "_value": [-1, 2]}),
        ("nni.qnormal(0, 1.5, 0.5)", {"_type": "qnormal", "_value": [0, 1.5, 0.5]}),
        ("nni.lognormal(0, 1)", {"_type": "lognormal", "_value": [0, 1]}),
        ("nni.qlognormal(2, 0.5, 1)", {"_type": "qlognormal", "_value": [2, 0.5, 1]}),
    ],
)
def test_every_sampling_function_gives_its_nni_type(call: str, entry: dict) -> None:
    space = _find(f"'''@nni.variable({call}, name=x)'''\nx = 1\n")
    func = call.split("(")[0].split(".")[1]
    assert space == {f"mnist/x/{func}": entry}
    SearchSpace.parse(space)  # a valid NNI space


def test_all_ten_sampling_functions_are_known() -> None:
    assert set(SAMPLING_FUNCTIONS) == {
        "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
        "normal", "qnormal", "lognormal", "qlognormal",
    }  # fmt: skip


def test_choice_options_literal_values_or_source_text() -> None:
    space = _find(
        """
        '''@nni.variable(nni.choice('relu', -1, True, None, [1, 2], size * 2), name=option)'''
        option = 'relu'
        """
    )
    assert space["mnist/option/choice"]["_value"] == ["relu", -1, True, None, "[1, 2]", "size * 2"]


def test_function_choice_key_and_options_are_nni_s() -> None:
    # seed L17712: @nni.function_choice(max_pool(hidden_layer, pool_size), avg_pool(...), name=max_pool)
    space = _find(
        """
        '''@nni.function_choice(max_pool(hidden_layer, pool_size), avg_pool(hidden_layer, pool_size), name=max_pool)'''
        h_pooling = max_pool(hidden_layer, pool_size)
        """
    )
    assert space == {
        "mnist/max_pool/function_choice": {
            "_type": "choice",
            "_value": ["max_pool(hidden_layer, pool_size)", "avg_pool(hidden_layer, pool_size)"],
        }
    }


def test_annotations_in_nested_blocks_and_attribute_names() -> None:
    space = _find(
        """
        class Net:
            def __init__(self):
                '''@nni.variable(nni.choice(50, 250, 500), name=self.batch_size)'''
                self.batch_size = 128

        def train():
            for i in range(3):
                if i:
                    try:
                        with open('x') as f:
                            '''@nni.variable(nni.choice(0.1, 0.5), name=dropout_rate)'''
                            dropout_rate: float = 0.5
                    except OSError:
                        '''@nni.variable(nni.uniform(0, 1), name=other)'''
                        other = 0.2
        """
    )
    assert sorted(space) == [
        "mnist/dropout_rate/choice",
        "mnist/other/uniform",
        "mnist/self.batch_size/choice",
    ]


def test_same_name_same_values_is_one_parameter() -> None:
    code = "'''@nni.variable(nni.choice(1, 2), name=k)'''\nk = 1\n"
    assert list(_find(code + code)) == ["mnist/k/choice"]


def test_docstrings_and_other_strings_are_left_alone() -> None:
    found = transform_source('"""Module doc mentioning @nni.variable."""\nx = "@nni.nothing"\n', "m", "m.py")
    assert found.space == {} and found.code is None and not found.annotated


# --- the rewritten code -----------------------------------------------------------------------------------------

TRIAL = '''\
"""A trial."""
from __future__ import annotations


def double(x):
    return 2 * x


def triple(x):
    return 3 * x


"""@nni.get_next_parameter()"""
"""@nni.variable(nni.choice(0.1, 0.01, 0.001), name=learning_rate)"""
learning_rate = 0.1
"""@nni.variable(nni.randint(1, 5), name=layers)"""
layers = 2
"""@nni.variable(nni.choice('relu', 'tanh', double(layers)), name=act)"""
act = 'relu'
"""@nni.function_choice(double(layers), triple(layers), name=scale)"""
y = double(layers) + 1
"""@nni.function_choice(print('first'), print('second'), name=say)"""
print('first')
for step in range(2):
    """@nni.report_intermediate_result(step)"""
print(learning_rate, layers, act, y)
"""@nni.report_final_result(y * learning_rate)"""
'''


def _run(path: Path, env: dict[str, str] | None = None, *, block_nni_pl: bool = False) -> str:
    code = f"import runpy, sys\nsys.path[0] = {str(path.parent)!r}\n"
    if block_nni_pl:
        code += "sys.modules['nni_pl'] = None  # any import of nni_pl fails\n"
    code += f"runpy.run_path({str(path)!r}, run_name='__main__')\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=path.parent,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_rewritten_code_imports_nni_pl_after_docstring_and_future_imports() -> None:
    code = transform_source(TRIAL, "trial", "trial.py").code
    assert code is not None
    tree = ast.parse(code)
    assert ast.get_docstring(tree) == "A trial."
    assert [ast.unparse(s) for s in tree.body[1:4]] == [
        "from __future__ import annotations",
        "import nni_pl",
        "import nni_pl.annotation",
    ]
    assert "@nni" not in code
    assert "nni_pl.get_next_parameter()" in code and "nni_pl.report_final_result(y * learning_rate)" in code
    assert "nni_pl.report_intermediate_result(step)" in code


def test_original_file_runs_with_plain_python_and_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "trial.py"
    path.write_text(TRIAL)
    out = _run(path, block_nni_pl=True)  # nni_pl cannot even be imported: the annotations are strings
    assert "0.1 2 relu 5" in out and "first" in out and "second" not in out


def test_rewritten_code_uses_the_parameters(tmp_path: Path) -> None:
    path = tmp_path / "trial.py"
    path.write_text(transform_source(TRIAL, "trial", path).code)
    params = {
        "trial/learning_rate/choice": 0.01,
        "trial/layers/randint": 4,
        "trial/act/choice": "double(layers)",
        "trial/scale/function_choice": "triple(layers)",
        "trial/say/function_choice": "print('second')",
    }
    out = _run(path, {"NNI_PL_PARAMETERS": json.dumps(params)})
    assert "0.01 4 8 13" in out  # act = double(4); y = triple(4) + 1
    assert "second" in out and "first" not in out
    assert "final result: 0.13" in out  # the standalone report of nni_pl.report_final_result


def test_rewritten_code_runs_standalone_on_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "trial.py"
    path.write_text(transform_source(TRIAL, "trial", path).code)
    assert "0.1 2 relu 5" in _run(path)


# --- errors: file and line ---------------------------------------------------------------------------------------


def test_variable_must_be_followed_by_an_assignment_to_its_name() -> None:
    err = _error(
        """
        x = 1
        '''@nni.variable(nni.choice(1, 2), name=batch_size)'''
        size = 128
        """,
        r"^mnist.py:4: @nni.variable\(name=batch_size\) at line 3 must be followed by an assignment to batch_size",
    )
    assert err.path == "mnist.py" and err.line == 4
    _error(
        "'''@nni.variable(nni.choice(1, 2), name=k)'''\nprint(k)\n",
        r"mnist.py:2: .* assignment to k .*got 'print\(k\)'",
    )
    _error("'''@nni.variable(nni.choice(1, 2), name=k)'''\nk += 1\n", r"mnist.py:2: .*assignment to k")
    _error("def f():\n    '''@nni.variable(nni.choice(1, 2), name=k)'''\n", r"mnist.py:2: .*last statement")


def test_unknown_annotation_is_named_with_a_suggestion() -> None:
    _error(
        "'''@nni.varaible(nni.choice(1, 2), name=k)'''\nk = 1\n",
        r"mnist.py:1: unknown annotation @nni.varaible \(did you mean 'variable'\?\)",
    )
    _error("'''@nni.mutable_layers({})'''\n", r"mnist.py:1: @nni.mutable_layers .* not supported")
    _error("x = 1\n'''@nni.variable(nni.choice(1, 2)'''\n", r"mnist.py:2: annotation .* is not a Python call")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ("nni.chioce(1, 2)", r"unknown sampling function nni.chioce \(did you mean 'choice'\?\)"),
        ("nni.uniform(0, 'a')", r"nni.uniform\(low, high\) takes number literals, got \"'a'\""),
        ("nni.uniform(0, lo)", r"takes number literals, got 'lo'"),
        ("nni.quniform(0, 1)", r"nni.quniform\(low, high, q\) takes 3 numbers, got 2"),
        ("nni.normal(0)", r"nni.normal\(mu, sigma\) takes 2 numbers, got 1"),
        ("nni.randint(5, 1)", r"'mnist/k/randint'"),
        ("nni.loguniform(-1, 1)", r"'mnist/k/loguniform'"),
        ("nni.choice()", r"needs at least one option"),
        ("nni.choice(1, 1)", r"lists the option 1 twice"),
        ("nni.uniform(low=0, high=1)", r"positional arguments only"),
        ("max(1, 2)", r"is not a sampling function"),
    ],
)
def test_bad_sampling_function_or_arguments(call: str, match: str) -> None:
    _error(f"x = 0\n'''@nni.variable({call}, name=k)'''\nk = 1\n", "^mnist.py:2: .*" + match)


def test_variable_needs_its_name() -> None:
    _error("'''@nni.variable(nni.choice(1, 2))'''\nk = 1\n", r"mnist.py:1: @nni.variable needs name=")
    _error("'''@nni.variable(nni.choice(1, 2), name=k, key=2)'''\nk = 1\n", r"one keyword argument, name=")


def test_function_choice_candidates_must_be_calls() -> None:
    _error(
        "x = 1\n'''@nni.function_choice(max_pool, avg_pool(h), name=pool)'''\nh = max_pool(h)\n",
        r"^mnist.py:2: @nni.function_choice candidate 'max_pool' is not a function call",
    )


def test_function_choice_statement_must_call_a_candidate() -> None:
    _error(
        "'''@nni.function_choice(f(h), g(h), name=pool)'''\nh = other(h)\n",
        r"^mnist.py:2: the statement after @nni.function_choice\(name=pool\) at line 1 calls none of its candidates",
    )


def test_reports_take_one_argument() -> None:
    _error(
        "'''@nni.report_final_result()'''\n", r"mnist.py:1: @nni.report_final_result takes 1 argument, got 0"
    )
    _error("'''@nni.report_intermediate_result(a, b)'''\n", r"takes 1 argument, got 2")
    _error("'''@nni.get_next_parameter(1)'''\n", r"takes 0 arguments, got 1")


def test_same_name_different_values_is_refused() -> None:
    _error(
        "'''@nni.variable(nni.choice(1, 2), name=k)'''\nk = 1\n'''@nni.variable(nni.choice(1, 3), name=k)'''\nk = 1\n",
        r"mnist.py:3: 'mnist/k/choice' is annotated twice with different values \(\[1, 2\] at line 1",
    )


def test_annotation_cannot_annotate_an_annotation() -> None:
    _error(
        "'''@nni.variable(nni.choice(1, 2), name=k)'''\n'''@nni.report_final_result(1)'''\n",
        r"mnist.py:2: an annotation cannot annotate another annotation",
    )


def test_invalid_python_names_the_line() -> None:
    _error("x = 1\ndef (:\n", r"^mnist.py:2: the file is not valid Python")


SCOPES = '''\
import asyncio


class Config:
    base = 3
    """@nni.variable(nni.choice(1, 2), name=k)"""
    k = base * 2
    """@nni.function_choice(max(base, 1), min(base, 1), name=pick)"""
    picked = max(base, 1)


async def main():
    """@nni.variable(nni.uniform(0, 1), name=x)"""
    x = await asyncio.sleep(0, result=0.5)
    """@nni.function_choice(asyncio.sleep(0, result='a'), asyncio.sleep(0, result='b'), name=wait)"""
    y = await asyncio.sleep(0, result='a')
    print(Config.k, Config.picked, x, y)


asyncio.run(main())
'''


def test_rewritten_code_keeps_class_body_names_and_await_working(tmp_path: Path) -> None:
    # no lambdas in the rewrite: a class body's names and `await` behave as in the original
    path = tmp_path / "scopes.py"
    path.write_text(transform_source(SCOPES, "scopes", path).code)
    assert "6 3 0.5 a" in _run(path)
    params = {"scopes/k/choice": 2, "scopes/pick/function_choice": "min(base, 1)", "scopes/x/uniform": 0.25}
    params["scopes/wait/function_choice"] = "asyncio.sleep(0, result='b')"
    assert "2 1 0.25 b" in _run(path, {"NNI_PL_PARAMETERS": json.dumps(params)})


def test_runtime_in_a_trial_refuses_a_missing_or_unknown_value(tmp_path: Path) -> None:
    from nni_pl.annotation import given, index, value
    from nni_pl.errors import NniPlError
    from nni_pl.trial import TrialContext, activate

    activate(TrialContext(trial_id="abc", trial_dir=tmp_path, parameters={"m/k/choice": 3}))
    try:
        assert given("m/k/choice") and value("m/k/choice") == 3
        with pytest.raises(
            NniPlError, match=r"parameters have no 'm/x/uniform' \(they have \['m/k/choice'\]\)"
        ):
            given("m/x/uniform")
        with pytest.raises(NniPlError, match=r"the tuner chose 3, which is none of the options \[1, 2\]"):
            index("m/k/choice", [1, 2])
    finally:
        activate(None)
