"""The registry of vector families and the one way to run a case."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ping_core.errors import PingError
from ping_core.mls.crypto import CryptoProvider

__all__ = [
    "Family",
    "FAMILIES",
    "VectorMismatch",
    "CaseResult",
    "PASSED",
    "NOT_APPLICABLE",
    "expect_equal",
    "detect_family",
    "run_case",
    "run_file",
]

SUITE = 1
PASSED = "passed"
FAILED = "failed"
NOT_APPLICABLE = "not applicable"

Case = dict[str, Any]
Runner = Callable[[Case, CryptoProvider], None]


class VectorMismatch(AssertionError):
    """A computed value differs from the vector's."""


def expect_equal(what: str, got: object, want: object) -> None:
    """Raise ``VectorMismatch`` naming ``what`` unless ``got == want``."""
    if got != want:
        def show(v: object) -> str:
            return v.hex() if isinstance(v, (bytes, bytearray)) else repr(v)
        raise VectorMismatch(f"{what}: got {show(got)}, want {show(want)}")


@dataclass(frozen=True)
class Family:
    """One kind of vector file.

    ``module`` is imported lazily (``ping_core.testing.vectors.<module>``) and must
    define ``run(case, provider)``. ``keys`` are fields every case of this
    family has; they identify a file that was renamed.
    """

    name: str
    module: str
    keys: frozenset[str]

    def runner(self) -> Runner | None:
        try:
            mod = importlib.import_module(f"{__package__}.{self.module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{self.module}":
                return None  # this family is not implemented yet
            raise
        run: Runner = mod.run
        return run


def _family(name: str, *keys: str) -> Family:
    return Family(name, name.replace("-", "_"), frozenset(keys))


# Most specific first: detection takes the first family whose keys a case has.
FAMILIES: tuple[Family, ...] = (
    _family("tree-math", "n_leaves", "n_nodes", "root"),
    _family("crypto-basics", "ref_hash", "expand_with_label", "derive_secret"),
    _family("deserialization", "vlbytes_header", "length"),
    _family("messages", "mls_welcome", "mls_group_info", "mls_key_package"),
    _family("secret-tree", "sender_data", "encryption_secret", "leaves"),
    _family("message-protection", "proposal_priv", "commit_priv", "application_priv"),
    _family("key-schedule", "initial_init_secret", "epochs"),
    _family("psk_secret", "psks", "psk_secret"),
    _family("transcript-hashes", "authenticated_content", "interim_transcript_hash_before"),
    _family("welcome", "init_priv", "key_package", "signer_pub", "welcome"),
    _family("tree-operations", "tree_before", "proposal", "tree_after"),
    _family("tree-validation", "tree", "tree_hashes", "resolutions"),
    _family("treekem", "leaves_private", "update_paths", "ratchet_tree"),
    Family("passive-client", "passive_client", frozenset({"key_package", "welcome", "epochs", "initial_epoch_authenticator"})),
)


def detect_family(cases: list[Case]) -> Family | None:
    """The family of a vector file, from the fields of its first case."""
    if not cases or not isinstance(cases[0], dict):
        return None
    fields = set(cases[0])
    for fam in FAMILIES:
        if fam.keys <= fields:
            return fam
    return None


@dataclass(frozen=True)
class CaseResult:
    status: str  # PASSED, FAILED or NOT_APPLICABLE
    detail: str = ""


def run_case(family: Family, case: Case, provider: CryptoProvider) -> CaseResult:
    """Run one case. Other cipher suites are not applicable, never passed."""
    suite = case.get("cipher_suite", SUITE)
    if suite != SUITE:
        return CaseResult(NOT_APPLICABLE, f"cipher suite {suite}")
    runner = family.runner()
    if runner is None:
        return CaseResult(FAILED, f"{family.name}: unsupported file type")
    try:
        runner(case, provider)
    except VectorMismatch as exc:
        return CaseResult(FAILED, str(exc))
    except (PingError, KeyError, ValueError) as exc:
        return CaseResult(FAILED, f"{type(exc).__name__}: {exc}")
    return CaseResult(PASSED)


@dataclass(frozen=True)
class FileResult:
    name: str
    family: Family | None
    results: list[CaseResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def supported(self) -> bool:
        return self.family is not None and self.family.runner() is not None


def run_file(name: str, cases: list[Case], provider: CryptoProvider) -> FileResult:
    family = detect_family(cases)
    if family is None:
        return FileResult(name, None, [CaseResult(FAILED, "unknown file type") for _ in cases])
    return FileResult(name, family, [run_case(family, c, provider) for c in cases])
