"""The public API of ``ping_core``, ``ping_core.mls`` and ``ping_core.mls.group`` is
exactly its ``__all__`` (httpx's tests/test_exported_members.py is the model).

Every name in ``__all__`` exists and is public (a class or function is documented
and defined under ``ping_core``); every public name a package offers is in its
``__all__`` (a name imported into the package's namespace is offered: either it
is public API, or the package must not import it there). Submodules are not
names of the API; ``__future__`` features are not either.
"""

from __future__ import annotations

import __future__
import importlib
import inspect
import sys
import types
import typing

import pytest

PACKAGES = ("ping_core", "ping_core.mls", "ping_core.mls.group")
# Dunder names that are part of the API.
PUBLIC_DUNDERS = {"__version__"}


def _offered(module: types.ModuleType) -> set[str]:
    """The names the package's namespace offers: not private, not a submodule, not a __future__ feature."""
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name in PUBLIC_DUNDERS)
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_all_lists_every_offered_name(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "__all__ has duplicates"
    assert sorted(_offered(module) - exported) == [], "offered but not in __all__"
    assert sorted(exported - _offered(module)) == [], "in __all__ but not offered"


@pytest.mark.parametrize("package", PACKAGES)
def test_exported_members_are_public_and_documented(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)  # AttributeError: __all__ names a missing member
        assert name in PUBLIC_DUNDERS or not name.startswith("_"), name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("ping_core"), f"{name} comes from {value.__module__}"
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"


def test_mls_offers_the_whole_group_api() -> None:
    """``ping_core.mls`` is the engine's public API: all of ``ping_core.mls.group``'s, re-exported."""
    import ping_core.mls
    import ping_core.mls.group

    assert sorted(set(ping_core.mls.group.__all__) - set(ping_core.mls.__all__)) == []


# Namespaces besides the package itself whose ``__all__`` also makes a type public
# (the errors raised, the storage and transport a client is built on, the wire structs).
TYPE_HOMES = {
    "ping_core": ("ping_core.errors", "ping_core.storage", "ping_core.transport", "ping_core.mls"),
    "ping_core.mls": ("ping_core.errors", "ping_core.mls.structs", "ping_core.mls.tls", "ping_core.mls.crypto"),
}


def _resolved(value: object) -> dict[str, object]:
    """``typing.get_type_hints``: an annotation naming a type the module cannot see at run time
    (imported only under TYPE_CHECKING) is itself a failure."""
    try:
        return typing.get_type_hints(value)
    except NameError as e:
        raise AssertionError(f"{value!r}: an annotation names what its module does not import: {e}") from None


def _public_constructor(init: object) -> bool:
    """Whether an ``__init__`` is for callers: not one documented as internal
    ("Internal: use the class methods"), which takes the engine's own state."""
    return not (inspect.getdoc(init) or "").startswith("Internal")


# Public fields of the engine's own bookkeeping: a StagedCommit carries the next epoch's
# state and the consumed ratchet key from the commit's creation or processing to
# Group.merge_staged_commit; no call takes them from a caller.
ENGINE_FIELDS = {"StagedCommit.next_state", "StagedCommit.ratchet_key"}


def _hints(value: object) -> dict[str, object]:
    """The type hints of a public function, or of a class's public fields, methods and properties."""
    if inspect.isfunction(value):
        return _resolved(value)
    assert inspect.isclass(value)
    hints = {k: v for k, v in _resolved(value).items() if not k.startswith("_")}
    for name, member in vars(value).items():
        if name.startswith("_") and not (name == "__init__" and _public_constructor(member)):
            continue
        func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if inspect.isfunction(func):
            hints.update({f"{name}.{k}": v for k, v in _resolved(func).items()})
    return hints


def _classes(hint: object) -> set[type]:
    """The classes of ``ping_core`` a type hint names."""
    out: set[type] = set()
    if inspect.isclass(hint) and hint.__module__.startswith("ping_core"):
        out.add(hint)
    for arg in typing.get_args(hint):
        out |= _classes(arg)
    return out


@pytest.mark.parametrize("package", sorted(TYPE_HOMES))
def test_types_in_public_signatures_are_exported(package: str) -> None:
    """Every ``ping_core`` class that a public signature takes or returns can be
    imported from the package (or one of its type homes): a caller never has to
    reach into a private module to name what the API hands back."""
    module = importlib.import_module(package)
    public = {getattr(module, n) for n in module.__all__ if inspect.isclass(getattr(module, n))}
    for home in TYPE_HOMES[package]:
        home_module = importlib.import_module(home)
        public |= {getattr(home_module, n) for n in home_module.__all__ if inspect.isclass(getattr(home_module, n))}
    missing = set()
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        for where, hint in _hints(value).items():
            if f"{name}.{where.removeprefix('__init__.')}" in ENGINE_FIELDS:
                continue
            for cls in _classes(hint):
                top = getattr(sys.modules[cls.__module__], cls.__qualname__.split(".")[0])
                if top not in public:
                    missing.add(f"{cls.__module__}.{cls.__qualname__} (in {name}.{where})")
    assert sorted(missing) == [], "\n".join(sorted(missing))
