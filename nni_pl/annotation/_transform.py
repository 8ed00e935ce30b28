"""One Python file's NNI annotations: read them into search-space entries and rewrite the file with ``ast``.

An annotation is a string statement that starts with ``@nni.`` (NNI's grammar, seed "NNI Annotation")::

    '''@nni.variable(nni.choice(0.1, 0.01, 0.001), name=learning_rate)'''
    learning_rate = 0.1

Its search-space key is NNI's: ``<module>/<name>/<function>``, where ``<module>`` is the file's dotted path
inside the code directory (``mnist``, ``models.cnn``), ``<name>`` the annotated variable (or function choice) and
``<function>`` the sampling function (``choice``, ``uniform``, ..., ``function_choice``). A ``choice`` option that
is a number, a string, ``True``/``False``/``None`` (a negative number too) is its own value in the space; any
other option (an expression, a call) appears there as its source text, and the rewritten code evaluates it.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError, SearchSpaceError, did_you_mean
from nni_pl.space import SearchSpace

__all__ = ["ANNOTATIONS", "SAMPLING_FUNCTIONS", "AnnotationError", "FileAnnotations", "transform_source"]

#: the sampling functions of ``@nni.variable`` and how many numbers each takes (``choice``: any options)
SAMPLING_FUNCTIONS: dict[str, int | None] = {
    "choice": None,
    "randint": 2,
    "uniform": 2,
    "quniform": 3,
    "loguniform": 2,
    "qloguniform": 3,
    "normal": 2,
    "qnormal": 3,
    "lognormal": 2,
    "qlognormal": 3,
}
_ARGUMENT_NAMES = {2: "(low, high)", 3: "(low, high, q)"}
_NORMAL_ARGUMENT_NAMES = {2: "(mu, sigma)", 3: "(mu, sigma, q)"}
ANNOTATIONS = (
    "variable",
    "function_choice",
    "report_intermediate_result",
    "report_final_result",
    "get_next_parameter",
)
_LEGACY = ("mutable_layers", "training_update")  # NNI's TensorFlow-only NAS annotations


class AnnotationError(NniPlError, ValueError):
    """An NNI annotation is wrong; the message starts with the file and line.

    Example:
        >>> str(AnnotationError("mnist.py", 12, "unknown annotation @nni.varaible"))
        'mnist.py:12: unknown annotation @nni.varaible'
    """

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class FileAnnotations:
    """What one file's annotations give: its search-space entries and, when it has any, the rewritten code.

    Example:
        >>> found = transform_source("'''@nni.report_final_result(0.9)'''\\n", "train")
        >>> found.annotated, found.space
        (True, {})
        >>> print(found.code, end="")
        import nni_pl
        import nni_pl.annotation
        nni_pl.report_final_result(0.9)
    """

    module: str
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # key -> line of its (first) annotation
    code: str | None = None  # None: the file has no annotation and is copied as it is

    @property
    def annotated(self) -> bool:
        return self.code is not None


def _attribute(*names: str) -> ast.expr:
    node: ast.expr = ast.Name(id=names[0], ctx=ast.Load())
    for name in names[1:]:
        node = ast.Attribute(value=node, attr=name, ctx=ast.Load())
    return node


def _call(func: ast.expr, *args: ast.expr) -> ast.Call:
    return ast.Call(func=func, args=list(args), keywords=[])


def _runtime(name: str, *args: ast.expr) -> ast.Call:
    """A call of ``nni_pl.annotation.<name>(...)`` (:mod:`nni_pl.annotation.runtime`)."""
    return _call(_attribute("nni_pl", "annotation", name), *args)


def _labels(values: list[Any]) -> ast.List:
    return ast.List(elts=[ast.Constant(v) for v in values], ctx=ast.Load())


def _if_given(key: str, tuned: ast.expr, own: ast.expr) -> ast.IfExp:
    """``tuned if nni_pl.annotation.given(key) else own``: no lambda, so ``await`` or a class body's names work."""
    return ast.IfExp(test=_runtime("given", ast.Constant(key)), body=tuned, orelse=own)


def _chosen_call(key: str, labels: list[str], calls: list[ast.expr], default: int) -> ast.expr:
    """``c0 if nni_pl.annotation.index(key, labels, default) == 0 else c1 if ... == 1 else c2``."""
    expr = calls[-1]
    for i in range(len(calls) - 2, -1, -1):
        test = ast.Compare(
            left=_runtime("index", ast.Constant(key), _labels(labels), ast.Constant(default)),
            ops=[ast.Eq()],
            comparators=[ast.Constant(i)],
        )
        expr = ast.IfExp(test=test, body=calls[i], orelse=expr)
    return expr


def _shape(node: ast.AST) -> str:
    """The node's structure without positions or load/store context (two spellings of one call compare equal)."""
    if isinstance(node, ast.AST):
        inner = ", ".join(f"{name}={_shape(value)}" for name, value in ast.iter_fields(node) if name != "ctx")
        return f"{type(node).__name__}({inner})"
    if isinstance(node, list):
        return "[" + ", ".join(_shape(v) for v in node) + "]"
    return repr(node)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """``(True, value)`` for a JSON scalar literal (``-1`` included), else ``(False, None)``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        ok, value = _literal(node.operand)
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, -value if isinstance(node.op, ast.USub) else value
        return False, None
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, (bool, int, float, str))
    ):
        if isinstance(node.value, float) and not math.isfinite(node.value):
            return False, None
        return True, node.value
    return False, None


class _Rewriter:
    """Walks every statement list of a module, expanding the annotation strings it meets."""

    def __init__(self, path: str, module: str) -> None:
        self.path = path
        self.module = module
        self.result = FileAnnotations(module=module)
        self.count = 0

    def error(self, node: ast.AST | int, message: str) -> AnnotationError:
        line = node if isinstance(node, int) else getattr(node, "lineno", 0)
        return AnnotationError(self.path, line, message)

    # --- walking ------------------------------------------------------------------------------------------------
    def visit_block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        i = 0
        while i < len(body):
            stmt = body[i]
            text = _annotation_text(stmt)
            if text is None:
                self.visit_children(stmt)
                out.append(stmt)
                i += 1
                continue
            self.count += 1
            call, kind = self.parse(stmt, text)
            if kind in ("variable", "function_choice"):
                target = body[i + 1] if i + 1 < len(body) else None
                if target is None:
                    raise self.error(
                        stmt,
                        f"@nni.{kind} is the last statement of its block; put it right above the "
                        + (
                            "assignment it annotates"
                            if kind == "variable"
                            else "statement that calls the function"
                        ),
                    )
                if _annotation_text(target) is not None:
                    raise self.error(
                        target, f"an annotation cannot annotate another annotation (the @nni.{kind} above it)"
                    )
                if kind == "variable":
                    self.variable(stmt, call, target)
                else:
                    self.function_choice(stmt, call, target)
                self.visit_children(target)
                out.append(target)
                i += 2
                continue
            out.append(self.statement(stmt, call, kind))
            i += 1
        return out

    def visit_children(self, node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if not isinstance(value, list) or not value:
                continue
            if all(isinstance(v, ast.stmt) for v in value):
                setattr(node, name, self.visit_block(value))
            else:
                for item in value:
                    if isinstance(item, (ast.excepthandler, ast.match_case)):
                        item.body = self.visit_block(item.body)

    # --- reading one annotation ---------------------------------------------------------------------------------
    def parse(self, stmt: ast.stmt, text: str) -> tuple[ast.Call, str]:
        source = text[1:]
        try:
            expr = ast.parse(source, mode="eval").body
        except SyntaxError as e:
            raise self.error(stmt, f"annotation {text!r} is not a Python call: {e.msg}") from None
        if not (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and isinstance(expr.func.value, ast.Name)
            and expr.func.value.id == "nni"
        ):
            raise self.error(
                stmt, f"annotation {text!r} is not a call of an @nni function; write e.g. @nni.variable(...)"
            )
        kind = expr.func.attr
        if kind in _LEGACY:
            raise self.error(
                stmt,
                f"@nni.{kind} (NNI's TensorFlow NAS annotation) is not supported; "
                "write the model space with nni_pl.nas (LayerChoice, InputChoice) instead",
            )
        if kind not in ANNOTATIONS:
            raise self.error(
                stmt,
                f"unknown annotation @nni.{kind}{did_you_mean(kind, ANNOTATIONS)}; "
                f"the annotations are {', '.join('@nni.' + a for a in ANNOTATIONS)}",
            )
        return expr, kind

    def name_of(self, stmt: ast.stmt, call: ast.Call, kind: str) -> ast.expr:
        keywords = {k.arg: k for k in call.keywords}
        extra = [k for k in keywords if k != "name"]
        if extra or None in keywords:
            raise self.error(
                stmt, f"@nni.{kind} takes one keyword argument, name=..., got {', '.join(map(str, extra))}="
            )
        if "name" not in keywords:
            raise self.error(stmt, f"@nni.{kind} needs name=<variable>, e.g. name=learning_rate")
        name = keywords["name"].value
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            try:
                name = ast.parse(name.value, mode="eval").body
            except SyntaxError:
                raise self.error(stmt, f"@nni.{kind} name={name.value!r} is not a variable name") from None
        if not isinstance(name, (ast.Name, ast.Attribute)):
            raise self.error(
                stmt,
                f"@nni.{kind} name={ast.unparse(name)} is not a variable name; write name=learning_rate "
                "(or name=self.learning_rate)",
            )
        return name

    def add(self, stmt: ast.stmt, key: str, entry: dict[str, Any]) -> None:
        try:
            SearchSpace.parse({key: entry})
        except SearchSpaceError as e:
            raise self.error(stmt, str(e)) from None
        space = self.result.space
        if key in space and space[key] != entry:
            raise self.error(
                stmt,
                f"{key!r} is annotated twice with different values ({space[key]['_value']} at line "
                f"{self.result.lines[key]}, {entry['_value']} here); give the second one another name or the same values",
            )
        space[key] = entry
        self.result.lines.setdefault(key, stmt.lineno)

    # --- @nni.variable --------------------------------------------------------------------------------------------
    def variable(self, stmt: ast.stmt, call: ast.Call, target: ast.stmt) -> None:
        name = self.name_of(stmt, call, "variable")
        label = ast.unparse(name)
        if len(call.args) != 1:
            raise self.error(
                stmt,
                f"@nni.variable takes one sampling function and name=, got {len(call.args)} positional arguments; "
                f"write e.g. @nni.variable(nni.choice(0.1, 0.01), name={label})",
            )
        sample = call.args[0]
        if not (
            isinstance(sample, ast.Call)
            and isinstance(sample.func, ast.Attribute)
            and isinstance(sample.func.value, ast.Name)
            and sample.func.value.id == "nni"
        ):
            raise self.error(
                stmt,
                f"@nni.variable's first argument {ast.unparse(sample)!r} is not a sampling function; use one of "
                + ", ".join(f"nni.{f}" for f in SAMPLING_FUNCTIONS),
            )
        func = sample.func.attr
        if func not in SAMPLING_FUNCTIONS:
            raise self.error(
                stmt,
                f"unknown sampling function nni.{func}{did_you_mean(func, SAMPLING_FUNCTIONS)}; use one of "
                + ", ".join(f"nni.{f}" for f in SAMPLING_FUNCTIONS),
            )
        if sample.keywords:
            raise self.error(
                stmt, f"nni.{func}() takes positional arguments only, got {sample.keywords[0].arg}=..."
            )
        # the annotated statement: one assignment to the annotated name
        value_holder: ast.Assign | ast.AnnAssign | None = None
        if isinstance(target, ast.Assign) and len(target.targets) == 1:
            assigned = target.targets[0]
            value_holder = target
        elif isinstance(target, ast.AnnAssign) and target.value is not None:
            assigned = target.target
            value_holder = target
        if value_holder is None or _shape(assigned) != _shape(name):
            got = ast.unparse(target).splitlines()[0] if target is not None else "nothing"
            raise self.error(
                target,
                f"@nni.variable(name={label}) at line {stmt.lineno} must be followed by an assignment to {label} "
                f"(e.g. {label} = <default value>), got {got!r}",
            )
        key = f"{self.module}/{label}/{func}"
        own = value_holder.value
        assert own is not None
        if func == "choice":
            if not sample.args:
                raise self.error(stmt, "nni.choice() needs at least one option, e.g. nni.choice(0.1, 0.01)")
            labels: list[Any] = []
            for option in sample.args:
                ok, value = _literal(option)
                labels.append(value if ok else ast.unparse(option))
            self.check_distinct(stmt, "nni.choice", labels)
            self.add(stmt, key, {"_type": "choice", "_value": labels})
            options = ast.List(elts=list(sample.args), ctx=ast.Load())
            tuned: ast.expr = ast.Subscript(
                value=options, slice=_runtime("index", ast.Constant(key), _labels(labels)), ctx=ast.Load()
            )
        else:
            wanted = SAMPLING_FUNCTIONS[func]
            names = (_NORMAL_ARGUMENT_NAMES if "normal" in func else _ARGUMENT_NAMES)[wanted]  # type: ignore[index]
            numbers = []
            for arg in sample.args:
                ok, value = _literal(arg)
                if not ok or isinstance(value, (bool, str)) or value is None:
                    raise self.error(
                        stmt,
                        f"nni.{func}{names} takes number literals, got {ast.unparse(arg)!r}; write the number itself",
                    )
                numbers.append(value)
            if len(numbers) != wanted:
                raise self.error(
                    stmt,
                    f"nni.{func}{names} takes {wanted} numbers, got {len(numbers)} "
                    f"({', '.join(map(repr, numbers)) or 'none'})",
                )
            self.add(stmt, key, {"_type": func, "_value": numbers})
            tuned = _runtime("value", ast.Constant(key))
        value_holder.value = _if_given(key, tuned, own)

    def check_distinct(self, stmt: ast.stmt, what: str, labels: list[Any]) -> None:
        seen: list[Any] = []
        for value in labels:
            if any(type(value) is type(s) and value == s for s in seen):
                raise self.error(stmt, f"{what}() lists the option {value!r} twice; give each option once")
            seen.append(value)

    # --- @nni.function_choice -----------------------------------------------------------------------------------
    def function_choice(self, stmt: ast.stmt, call: ast.Call, target: ast.stmt) -> None:
        name = self.name_of(stmt, call, "function_choice")
        label = ast.unparse(name)
        if not call.args:
            raise self.error(
                stmt,
                "@nni.function_choice needs the candidate calls, e.g. "
                f"@nni.function_choice(max_pool(h, 2), avg_pool(h, 2), name={label})",
            )
        for arg in call.args:
            if not isinstance(arg, ast.Call):
                raise self.error(
                    stmt,
                    f"@nni.function_choice candidate {ast.unparse(arg)!r} is not a function call; give complete "
                    "calls with their arguments, e.g. max_pool(h, 2)",
                )
        labels = [ast.unparse(arg) for arg in call.args]
        self.check_distinct(stmt, "@nni.function_choice", labels)
        key = f"{self.module}/{label}/function_choice"
        self.add(stmt, key, {"_type": "choice", "_value": labels})
        shapes = [_shape(arg) for arg in call.args]
        replaced = 0

        rewriter = self

        class _Replace(ast.NodeTransformer):
            def visit_Call(self, node: ast.Call) -> ast.expr:
                nonlocal replaced
                shape = _shape(node)
                if shape in shapes:
                    replaced += 1
                    return _chosen_call(key, labels, list(call.args), shapes.index(shape))
                self.generic_visit(node)
                return node

        _Replace().visit(target)
        if not replaced:
            raise rewriter.error(
                target,
                f"the statement after @nni.function_choice(name={label}) at line {stmt.lineno} calls none of its "
                f"candidates ({', '.join(labels)}); write one of them, e.g. h = {labels[0]}",
            )

    # --- reports and get_next_parameter -------------------------------------------------------------------------
    def statement(self, stmt: ast.stmt, call: ast.Call, kind: str) -> ast.stmt:
        if call.keywords:
            raise self.error(stmt, f"@nni.{kind} takes no keyword arguments, got {call.keywords[0].arg}=...")
        wanted = 0 if kind == "get_next_parameter" else 1
        if len(call.args) != wanted:
            example = "@nni.get_next_parameter()" if wanted == 0 else f"@nni.{kind}(accuracy)"
            raise self.error(
                stmt,
                f"@nni.{kind} takes {wanted} argument{'s' if wanted != 1 else ''}, got {len(call.args)}; "
                f"write e.g. {example}",
            )
        new = ast.Expr(value=_call(_attribute("nni_pl", kind), *call.args))
        return ast.copy_location(new, stmt)


def _annotation_text(stmt: ast.stmt | None) -> str | None:
    """The text of an annotation string statement (``'@nni.…'``, surrounding blanks removed), else ``None``."""
    if (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    ):
        text = stmt.value.value.strip()
        if text.startswith("@nni."):
            return text
    return None


def _insert_imports(tree: ast.Module) -> None:
    """``import nni_pl`` and ``import nni_pl.annotation`` after the docstring and ``from __future__`` imports."""
    at = 0
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):  # type: ignore[attr-defined]
            at = 1
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            at = i + 1
    imports = [
        ast.Import(names=[ast.alias(name="nni_pl")]),
        ast.Import(names=[ast.alias(name="nni_pl.annotation")]),
    ]
    body[at:at] = imports


def transform_source(source: str | bytes, module: str, path: str | Path = "<string>") -> FileAnnotations:
    """Read one file's annotations: its search-space entries and its rewritten code (``None`` if it has none).

    Args:
        source: the file's text.
        module: its dotted module path inside the code directory (the first part of every key).
        path: the file, for error messages.

    Raises:
        AnnotationError: naming the file and line.

    Example:
        >>> found = transform_source(
        ...     "'''@nni.variable(nni.choice(0.1, 0.01), name=lr)'''\\nlr = 0.1\\n", "mnist")
        >>> found.space
        {'mnist/lr/choice': {'_type': 'choice', '_value': [0.1, 0.01]}}
        >>> print(found.code)
        import nni_pl
        import nni_pl.annotation
        lr = [0.1, 0.01][nni_pl.annotation.index('mnist/lr/choice', [0.1, 0.01])] if nni_pl.annotation.given('mnist/lr/choice') else 0.1
    """
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise AnnotationError(path, e.lineno or 0, f"the file is not valid Python: {e.msg}") from None
    rewriter = _Rewriter(str(path), module)
    tree.body = rewriter.visit_block(tree.body)
    result = rewriter.result
    if rewriter.count:
        _insert_imports(tree)
        ast.fix_missing_locations(tree)
        result.code = ast.unparse(tree) + "\n"
    return result
