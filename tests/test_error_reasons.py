"""Every ``MlsError`` carries an ``MlsReason``, given where it is raised.

``MlsError.__init__`` takes ``reason`` as a required keyword, so a forgotten
one is a ``TypeError`` when the refusal happens, and mypy reports it. That
only bites on the paths tests reach, so ``test_every_raise_site_names_a_reason``
also walks the source of ``ping_core`` and ``pyodide_app``: every call that
builds an ``MlsError`` (or a subclass, including ones defined outside
``ping_core.errors``) passes ``reason=``; a subclass with its own
``__init__`` passes it to ``super().__init__``. The checker is itself tested
on a source that forgets one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ping_core import errors
from ping_core.errors import (
    CryptoError,
    DecryptionFailed,
    InvalidKey,
    InvalidSignature,
    MlsDecodeError,
    MlsError,
    MlsOrigin,
    MlsReason,
    stored_state,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("ping_core", "pyodide_app")
# The classes of ping_core.errors that are MlsErrors.
BASE_CLASSES = frozenset(
    name for name in errors.__all__ if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), MlsError)
)


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _has_reason(call: ast.Call) -> bool:
    return any(k.arg == "reason" for k in call.keywords)


def missing_reasons(sources: dict[str, str]) -> list[str]:
    """``file:line`` of every call building an MlsError without ``reason=`` in ``sources``
    (file name -> Python source). Subclasses are found across all the sources."""
    trees = {name: ast.parse(src) for name, src in sources.items()}
    mls_classes = set(BASE_CLASSES)
    own_init: set[str] = set()  # subclasses whose own __init__ passes the reason on
    bad: list[str] = []
    grew = True
    while grew:  # a subclass of a subclass, in any order
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in mls_classes
                    and any(_name(b) in mls_classes for b in node.bases)
                ):
                    mls_classes.add(node.name)
                    grew = True
    for file, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in mls_classes - BASE_CLASSES:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        supers = [
                            c for c in ast.walk(item)
                            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "__init__"
                        ]  # fmt: skip
                        if supers and all(_has_reason(c) for c in supers):
                            own_init.add(node.name)
                        else:
                            bad.append(f"{file}:{item.lineno}")
    for file, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in mls_classes - own_init and not _has_reason(node):
                bad.append(f"{file}:{node.lineno}")
    return sorted(bad)


def _sources() -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for package in SOURCES
        for p in sorted((ROOT / package).rglob("*.py"))
    }


def test_every_raise_site_names_a_reason() -> None:
    sources = _sources()
    assert len(sources) > 100  # the walk found the packages
    assert missing_reasons(sources) == []


def test_the_checker_finds_a_forgotten_reason() -> None:
    src = '''
from ping_core.errors import MlsError, MlsReason, InvalidSignature

class Mine(InvalidSignature):
    pass

class Fixed(MlsError):
    def __init__(self, x):
        super().__init__(f"x={x}", reason=MlsReason.WRONG_STATE)

class Forgets(MlsError):
    def __init__(self):
        super().__init__("no reason")

def f():
    raise MlsError("ok", reason=MlsReason.MALFORMED)
def g():
    raise InvalidSignature("forgot")
def h():
    raise Mine("forgot too")
def i():
    raise Fixed(3)
'''
    assert missing_reasons({"m.py": src}) == ["m.py:12", "m.py:18", "m.py:20"]


def test_reason_is_required_and_typed() -> None:
    with pytest.raises(TypeError):
        MlsError("no reason")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        InvalidSignature("no reason")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="MlsReason"):
        MlsError("a string is not a reason", reason="malformed")  # type: ignore[arg-type]


def test_origin_splits_local_misuse_from_a_peers_bad_message() -> None:
    local = {
        MlsReason.INVALID_ARGUMENT,
        MlsReason.WRONG_STATE,
        MlsReason.UNSUPPORTED_OPTION,
        MlsReason.CORRUPT_STATE,
        MlsReason.BACKEND_FAILURE,
    }
    for reason in MlsReason:
        err = MlsError("x", reason=reason)
        want = MlsOrigin.LOCAL if reason in local else MlsOrigin.PEER
        assert reason.origin is want and err.origin is want, reason
        assert err.is_peer_fault is (want is MlsOrigin.PEER)
    assert MlsError("x", reason=MlsReason.BAD_SIGNATURE).is_peer_fault
    assert not MlsError("x", reason=MlsReason.WRONG_STATE).is_peer_fault


def test_subclasses_keep_their_place_in_the_hierarchy() -> None:
    """``except InvalidSignature`` / ``except CryptoError`` / ``except MlsError`` still catch."""
    for cls in (InvalidSignature, DecryptionFailed, InvalidKey):
        with pytest.raises(CryptoError):
            raise cls("x", reason=MlsReason.BAD_SIGNATURE)
    with pytest.raises(MlsError) as info:
        raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
    assert type(info.value) is MlsDecodeError and info.value.reason is MlsReason.MALFORMED
    assert repr(info.value) == "MlsDecodeError('truncated input', reason=MlsReason.MALFORMED)"


def test_every_reason_is_raised_somewhere() -> None:
    """No reason is dead weight: each one is named at a raise site of ping_core or pyodide_app."""
    used = set()
    for src in _sources().values():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "MlsReason":
                used.add(node.attr)
    assert sorted(r.name for r in MlsReason if r.name not in used) == []


def test_stored_state_relabels_all_but_the_environment() -> None:
    """Decoding our own stored state: whatever refuses the bytes is CORRUPT_STATE (same
    class, same message after a prefix); a failure of the crypto backend stays what it is."""

    @stored_state
    def load(reason: MlsReason) -> None:
        raise MlsDecodeError("truncated input", reason=reason)

    for reason in (MlsReason.MALFORMED, MlsReason.BAD_TREE, MlsReason.INVALID_ARGUMENT, MlsReason.CORRUPT_STATE):
        with pytest.raises(MlsDecodeError) as info:
            load(reason)
        assert info.value.reason is MlsReason.CORRUPT_STATE and not info.value.is_peer_fault
        assert "truncated input" in str(info.value)
    for reason in (MlsReason.BACKEND_FAILURE, MlsReason.UNSUPPORTED_OPTION):
        with pytest.raises(MlsDecodeError) as info:
            load(reason)
        assert info.value.reason is reason



def test_docs_list_every_reason_under_its_origin() -> None:
    """docs/architecture.md (Errors) names each reason once, in the row of its origin."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("## Errors") :].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| `")}
    for reason in MlsReason:
        row = next(text for origin, text in rows.items() if origin.startswith(f"`{reason.origin.name}`"))
        assert f"`{reason.name}`" in row, reason
