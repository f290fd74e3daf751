"""The key schedule layer of the engine (RFC 9420 §8): what turns a commit into an epoch.

* :mod:`~ping_core.mls.schedule.key_schedule`: init, joiner, welcome and epoch
  secrets, the exporter, the external key pair (§8, §8.5, §8.6, §12.4.3.1);
* :mod:`~ping_core.mls.schedule.psk_secret`: the PSK secret from chained
  pre-shared keys (§8.4);
* :mod:`~ping_core.mls.schedule.transcript`: the confirmed and interim
  transcript hashes, confirmation and membership tags (§8.2, §6.2, §6.1).

It builds on the tree layer and the primitives only; framing, Welcome and the
group build on it.
"""
