"""Costs of the SDK's own records: envelope encode/decode, identity and device operations.

    python benchmarks/formats_bench.py [--pure]

``--pure`` uses cbor2's pure-Python code (what Pyodide runs) instead of its C extension.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core import cbor as codec  # noqa: E402
from ping_core.clock import Hlc  # noqa: E402
from ping_core.device import LinkingTicket, LocalDevice  # noqa: E402
from ping_core.identity import Identity  # noqa: E402
from ping_core.ids import ConversationId  # noqa: E402
from ping_core.link import LinkKeyPair, open_ticket, seal_ticket  # noqa: E402
from ping_core.message import MessageEnvelope, MessageKind  # noqa: E402
from ping_core.sync import SyncCursor  # noqa: E402


def per_call_us(fn: object, n: int) -> float:
    return timeit.timeit(fn, number=n) / n * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pure", action="store_true", help="pure-Python cbor2 (as in Pyodide)")
    args = parser.parse_args()
    if args.pure:
        import cbor2._encoder

        codec._dumps = cbor2._encoder.dumps
    print(f"python {sys.version.split()[0]}, cbor2 {'pure Python' if args.pure else 'C extension'}")

    ident = Identity.generate()
    dev = LocalDevice.generate(ident.user_id, "phone", 1)
    env = MessageEnvelope(ConversationId.new(), 7, MessageKind.APPLICATION, dev.device_id, 0, Hlc(1_700_000_000_000, 3), b"\x00" * 200)
    data = env.encode()
    print(f"envelope (200 B payload): {len(data)} B encoded")
    print(f"  encode               {per_call_us(env.encode, 20000):8.1f} us")
    print(f"  decode (strict)      {per_call_us(lambda: MessageEnvelope.decode(data), 20000):8.1f} us")
    big = MessageEnvelope(env.conversation_id, 7, MessageKind.WELCOME, dev.device_id, 0, Hlc.ZERO, b"\x00" * 300_000)
    big_data = big.encode()
    print(f"  decode 300 KB Welcome {per_call_us(lambda: MessageEnvelope.decode(big_data), 200):7.1f} us")
    cur = SyncCursor(123456).encode()
    print(f"SyncCursor decode      {per_call_us(lambda: SyncCursor.decode(cur), 20000):8.1f} us")
    print(f"sign_device_binding    {per_call_us(lambda: ident.sign_device_binding(dev.device_id), 2000):8.1f} us")
    sig = ident.sign_device_binding(dev.device_id)
    print(f"verify_device_binding  {per_call_us(lambda: Identity.verify_device_binding(ident.public_key, ident.user_id, dev.device_id, sig), 2000):8.1f} us")
    exported = ident.export()
    print(f"Identity.import_       {per_call_us(lambda: Identity.import_(exported), 2000):8.1f} us")
    kp = LinkKeyPair.generate()
    ticket = LinkingTicket.new(ident, dev.device_id, b"\x00" * 2000, b"\x00" * 20000)
    sealed = seal_ticket(ticket, kp.public_key)
    print(f"seal_ticket (22 KB)    {per_call_us(lambda: seal_ticket(ticket, kp.public_key), 500):8.1f} us")
    print(f"open_ticket (22 KB)    {per_call_us(lambda: open_ticket(sealed, kp, dev.device_id), 500):8.1f} us")


if __name__ == "__main__":
    main()
