"""Every test checks something: a test function with no ``assert``, no ``pytest.raises``/``pytest.warns``
and no call of a helper that asserts passes whatever the code does (static, with ast: no test runs).

A library check (``torch.testing.assert_close``, ``np.testing.assert_*``) counts as an assert. A helper
is a function defined anywhere under tests/ whose body asserts, or calls such a helper. A
test that proves its point another way names itself in EXEMPT, with the reason beside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
EXEMPT: dict[str, str] = {  # "file.py::test_name" -> why it needs no assert of its own
}
CHECKS = {"raises", "warns"}  # pytest.raises / pytest.warns


def _asserts_directly(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CHECKS:
            if isinstance(n.func.value, ast.Name) and n.func.value.id == "pytest":
                return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("assert_"):
            return True  # torch.testing.assert_close, np.testing.assert_array_equal, ...
    return False


def _called_names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return out - {""}


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _tests(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level ``test_*`` functions and ``test_*`` methods of ``Test*`` classes."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            out.append(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            out += [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and m.name.startswith("test")]  # fmt: skip
    return out


def _asserting_helpers(trees: list[ast.Module]) -> set[str]:
    """Names of functions under tests/ that assert, directly or through another such function."""
    defs = [f for t in trees for f in _functions(t) if not f.name.startswith("test")]
    asserting = {f.name for f in defs if _asserts_directly(f)}
    while True:
        more = {f.name for f in defs if f.name not in asserting and _called_names(f) & asserting}
        if not more:
            return asserting
        asserting |= more


def _silent_tests() -> list[str]:
    files = sorted(TESTS.rglob("*.py"))
    trees = {p: ast.parse(p.read_text(), filename=str(p)) for p in files}
    helpers = _asserting_helpers(list(trees.values()))
    silent = []
    for path, tree in trees.items():
        if not (path.name.startswith("test_") and path.parent == TESTS):
            continue
        for fn in _tests(tree):
            if not _asserts_directly(fn) and not (_called_names(fn) & helpers):
                silent.append(f"{path.name}::{fn.name}")
    return silent


def test_every_test_asserts_or_calls_a_helper_that_does() -> None:
    silent = [t for t in _silent_tests() if t not in EXEMPT]
    assert not silent, ("tests that check nothing (add an assert, or an EXEMPT entry with its reason in "
                        f"{Path(__file__).name}):\n  " + "\n  ".join(silent))  # fmt: skip


def test_every_exemption_names_a_silent_test_and_says_why() -> None:
    silent = set(_silent_tests())
    assert all(why.strip() for why in EXEMPT.values()), EXEMPT
    stale = sorted(set(EXEMPT) - silent)
    assert not stale, f"exempt but asserting now, or gone (remove from EXEMPT): {stale}"


def test_the_check_sees_a_silent_test_and_a_helper_that_asserts() -> None:
    tree = ast.parse(
        "def check(x):\n    assert x\n"
        "def via(x):\n    check(x)\n"
        "def test_silent():\n    print(1)\n"
        "def test_helper():\n    via(1)\n"
        "def test_raises():\n    with pytest.raises(ValueError):\n        int('x')\n"
        "def test_close():\n    torch.testing.assert_close(1.0, 1.0)\n"
        "class TestThing:\n    def test_method(self):\n        assert 1\n    def test_quiet(self):\n        pass\n"
    )
    helpers = _asserting_helpers([tree])
    assert helpers == {"check", "via"}
    verdict = {fn.name: _asserts_directly(fn) or bool(_called_names(fn) & helpers) for fn in _tests(tree)}
    assert verdict == {"test_silent": False, "test_helper": True, "test_raises": True, "test_close": True,
                       "test_method": True, "test_quiet": False}  # fmt: skip
