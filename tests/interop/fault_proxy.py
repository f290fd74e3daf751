"""A driver that wraps another driver and corrupts one field, to show that the rig notices.

    python fault_proxy.py --op export --field secret --name carol [--request] -- node tsmls_driver.mjs

Requests pass through to the wrapped driver one at a time. For requests with the given ``op`` (and
``name``, if given), the proxy flips the lowest bit of the last byte of the hex ``field`` of the
response, or with ``--request`` of the request (so the wrapped driver sees a tampered input).
Only the test suite uses it (tests/interop/test_interop.py, the rig's self-tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def flip(hex_value: str) -> str:
    """``hex_value`` with the lowest bit of its last byte flipped."""
    if len(hex_value) < 2:
        return "00"
    last = int(hex_value[-2:], 16) ^ 1
    return hex_value[:-2] + f"{last:02x}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", required=True)
    ap.add_argument("--field", required=True)
    ap.add_argument("--name")
    ap.add_argument("--request", action="store_true", help="corrupt the request, not the response")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert child.stdin is not None and child.stdout is not None
    for line in sys.stdin:
        req = json.loads(line)
        hit = req.get("op") == args.op and (args.name is None or req.get("name") == args.name)
        if hit and args.request and isinstance(req.get(args.field), str):
            req[args.field] = flip(req[args.field])
        child.stdin.write(json.dumps(req) + "\n")
        child.stdin.flush()
        answer = child.stdout.readline()
        if not answer:
            return child.wait()
        resp = json.loads(answer)
        if hit and not args.request and isinstance(resp.get(args.field), str):
            resp[args.field] = flip(resp[args.field])
        sys.stdout.write(json.dumps(resp) + "\n")
        sys.stdout.flush()
    child.stdin.close()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
