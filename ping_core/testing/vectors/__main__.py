"""``python -m ping_core.testing.vectors FILE.json [FILE.json ...]``

Prints ``NAME: P passed, F failed, S not applicable`` per file and, last,
exactly ``N passed, M failed``. Exits non-zero when any case failed.
Cases of other cipher suites are not applicable (never counted as passed); a
file of a type this engine cannot run yet counts all its cases as failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ping_core.mls.crypto import default_provider

from ping_core.testing.vectors.registry import FAILED, NOT_APPLICABLE, PASSED, run_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ping_core.testing.vectors", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="official test-vector JSON files")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failing case's reason")
    args = parser.parse_args(argv)

    provider = default_provider()
    total_passed = total_failed = 0
    for path in args.files:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as fh:
                cases = json.load(fh)
        except (OSError, ValueError) as exc:
            print(f"{name}: cannot read ({exc}), counted as 1 failed")
            total_failed += 1
            continue
        if not isinstance(cases, list):
            cases = [cases]
        result = run_file(name, cases, provider)
        p, f, s = result.count(PASSED), result.count(FAILED), result.count(NOT_APPLICABLE)
        note = "" if result.supported else " (unsupported file type)"
        print(f"{name}: {p} passed, {f} failed, {s} not applicable{note}")
        if args.verbose:
            for i, r in enumerate(result.results):
                if r.status == FAILED:
                    print(f"  case {i}: {r.detail}")
        total_passed += p
        total_failed += f
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
