"""Test and tool code that is not part of the SDK a host uses.

``import ping_core`` never imports this package, and the Pyodide bundle built by
``build.py`` leaves it out (the Pyodide test harness under ``tests/node`` installs
it as a separate test wheel). It holds:

* :mod:`ping_core.testing.memory`: ``MemoryDeliveryService``, an in-process
  delivery service with ``ping_server``'s semantics, ``MemoryTransport`` (one
  device's view of it) and ``Fault`` (fault injection for failure-path tests),
  over :mod:`~ping_core.testing.device_directory` (devices, KeyPackage pools, quotas),
  :mod:`~ping_core.testing.stored` and :mod:`~ping_core.testing.faults`;
* :mod:`ping_core.testing.vectors`: the runner of the official RFC 9420 test
  vectors, ``python -m ping_core.testing.vectors FILE.json``.
"""
