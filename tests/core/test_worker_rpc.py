"""The worker's RPC table and dispatch (pyodide_app.rpc) and HTTP error parsing.

Pure Python: runs on CPython and inside Pyodide (tests/node).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ping_core.errors import InvalidInput, InvalidSignature, MlsError, MlsReason, StorageError, TransportError
import importlib
import sys
import types
from pathlib import Path

from pyodide_app import info, rpc, worker
from pyodide_app.fetch import error_from_response


@pytest.fixture
def table():
    names = set(rpc.methods())
    yield rpc
    for name in set(rpc.methods()) - names:
        rpc.unregister_method(name)


@pytest.fixture(autouse=True)
def _own_methods() -> None:
    rpc.register_functions(info)  # what boot() registers first


def run(request: object) -> dict:
    return asyncio.run(rpc.dispatch(request))  # type: ignore[arg-type]


def test_ping_round_trip() -> None:
    reply = run({"id": 7, "method": "ping", "params": {"x": [1, b"\x00"]}})
    assert reply["id"] == 7
    assert reply["result"]["pong"] is True
    assert reply["result"]["echo"] == {"x": [1, b"\x00"]}


def test_sync_and_async_handlers(table) -> None:
    table.register_method("t.sync", lambda p: p["a"] + 1)

    async def slow(p):
        await asyncio.sleep(0)
        return {"b": bytes(p["n"])}

    table.register_method("t.async", slow)
    assert run({"id": 1, "method": "t.sync", "params": {"a": 1}}) == {"id": 1, "result": 2}
    assert run({"id": 2, "method": "t.async", "params": {"n": 3}}) == {"id": 2, "result": {"b": b"\0\0\0"}}
    assert run({"id": 3, "method": "t.sync", "params": None}) == {
        "id": 3,
        "error": {"name": "KeyError", "message": "KeyError: 'a'"},
    }


def test_errors_become_replies(table) -> None:
    def fail_transport(p):
        raise TransportError("HTTP 409: epoch moved", status=409, code="epoch_advanced")

    def fail_storage(p):
        raise StorageError("disk full")

    def fail_mls(p):
        raise InvalidSignature("the leaf node signature does not verify", reason=MlsReason.BAD_SIGNATURE)

    def misuse_mls(p):
        raise MlsError("proposals are pending", reason=MlsReason.WRONG_STATE)

    async def fail_bug(p):
        raise ZeroDivisionError("division by zero")

    table.register_method("t.transport", fail_transport)
    table.register_method("t.storage", fail_storage)
    table.register_method("t.bug", fail_bug)
    table.register_method("t.mls", fail_mls)
    table.register_method("t.misuse", misuse_mls)
    assert run({"id": 1, "method": "t.transport"})["error"] == {
        "name": "TransportError",
        "message": "HTTP 409: epoch moved",
        "status": 409,
        "code": "epoch_advanced",
    }
    assert run({"id": 2, "method": "t.storage"})["error"] == {"name": "StorageError", "message": "disk full"}
    bug = run({"id": 3, "method": "t.bug"})["error"]
    assert bug["name"] == "ZeroDivisionError" and "division by zero" in bug["message"]
    # An engine refusal says why, and whose fault it is, as data (the page never parses text).
    assert run({"id": 4, "method": "t.mls"})["error"] == {
        "name": "InvalidSignature",
        "message": "the leaf node signature does not verify",
        "reason": "bad_signature",
        "peer_fault": True,
    }
    assert run({"id": 5, "method": "t.misuse"})["error"] == {
        "name": "MlsError",
        "message": "proposals are pending",
        "reason": "wrong_state",
        "peer_fault": False,
    }


@pytest.mark.parametrize(
    "request_",
    [
        {"id": 1, "method": "no.such.method"},
        {"id": 1},
        {"id": 1, "method": 5},
        {"id": 1, "method": "ping", "params": [1, 2]},
        "not an object",
        None,
    ],
)
def test_malformed_requests(request_) -> None:
    reply = run(request_)
    assert reply["error"]["name"] == "InvalidInput"
    assert reply["id"] == (request_.get("id") if isinstance(request_, dict) else None)


def test_method_table_refuses_silent_shadowing(table) -> None:
    table.register_method("t.once", lambda p: 1)
    with pytest.raises(ValueError):
        table.register_method("t.once", lambda p: 2)
    table.register_method("t.once", lambda p: 3, replace=True)
    assert run({"id": 1, "method": "t.once"})["result"] == 3

    @table.method("t.decorated")
    def decorated(p):
        return "ok"

    assert "t.decorated" in table.methods()
    assert run({"id": 1, "method": "t.decorated"})["result"] == "ok"


def test_result_conversion_refuses_what_js_cannot_clone() -> None:
    assert rpc._to_plain({"a": (1, bytearray(b"x")), "b": None}) == {"a": [1, b"x"], "b": None}
    with pytest.raises(InvalidInput):
        rpc._to_plain({"a": {1, 2}})
    with pytest.raises(InvalidInput):
        rpc._to_plain({1: "non-string key"})


def test_from_js_normalizes_buffers() -> None:
    assert rpc.from_js({"a": memoryview(b"xy"), "b": [bytearray(b"z")], "n": 5}) == {
        "a": b"xy",
        "b": [b"z"],
        "n": 5,
    }


@pytest.mark.parametrize(
    ("status", "body", "ctype", "code", "message", "definite"),
    [
        (404, json.dumps({"code": "not_found", "message": "no route"}).encode(), "application/json",
         "not_found", "HTTP 404: no route", True),
        (409, b'{"code":"epoch_advanced","message":"epoch 3 is over"}', "application/json; charset=utf-8",
         "epoch_advanced", "HTTP 409: epoch 3 is over", True),
        (500, b"Internal Server Error", "text/plain", None, "HTTP 500", False),
        (503, b'{"code": 5}', "application/json", None, "HTTP 503", False),
        (502, b"{not json", "application/json", None, "HTTP 502", False),
        (400, b"", "", None, "HTTP 400", True),
        # A hostile server's body nested past json's recursion limit (RecursionError before).
        (502, b"[" * 65536, "application/json", None, "HTTP 502", False),
        (502, b'{"a":' * 20000 + b"1" + b"}" * 20000, "application/json", None, "HTTP 502", False),
    ],
)  # fmt: skip
def test_error_from_response(status, body, ctype, code, message, definite) -> None:
    err = error_from_response(status, body, ctype)
    assert isinstance(err, TransportError)
    assert (err.status, err.code, str(err), err.is_definite_rejection) == (status, code, message, definite)


def test_register_functions_takes_the_module_own_declarations(table) -> None:
    feature = types.ModuleType("pyodide_app.t_feature")
    exec(
        "from pyodide_app.rpc import rpc\n"
        "from pyodide_app.info import ping\n"  # declared by pyodide_app.info, not here
        "@rpc('t.one')\n"
        "def one(params): return 1\n"
        "@rpc('t.dev', dev=True)\n"
        "def dev(params): return 2\n"
        "def plain(params): return 3\n",
        feature.__dict__,
    )
    assert rpc.declared(feature) == [("t.one", "one")]
    assert rpc.declared(feature, dev=True) == [("t.dev", "dev"), ("t.one", "one")]
    assert rpc.register_functions(feature) == ["t.one"]
    assert rpc.register_functions(feature) == ["t.one"]  # again: replaces, no error
    assert "t.dev" not in rpc.methods() and "t.one" in rpc.methods()
    assert run({"id": 1, "method": "t.one"}) == {"id": 1, "result": 1}


def test_register_lazy_imports_the_module_on_first_call(table, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "t_lazy_feature.py").write_text(
        "from pyodide_app.rpc import rpc\n"
        "CALLS = []\n"
        "@rpc('t.lazy.a')\n"
        "def a(params): CALLS.append(params); return 'a'\n"
        "@rpc('t.lazy.b')\n"
        "async def b(params): return 'b'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "t_lazy_feature", raising=False)
    rpc.register_lazy("t_lazy_feature", ["t.lazy.a", "t.lazy.b"])
    assert {"t.lazy.a", "t.lazy.b"} <= set(rpc.methods())  # the table is complete at once
    assert "t_lazy_feature" not in sys.modules  # the module is not imported yet
    assert run({"id": 1, "method": "t.lazy.b"}) == {"id": 1, "result": "b"}
    feature = sys.modules["t_lazy_feature"]
    assert run({"id": 2, "method": "t.lazy.a", "params": {"x": 1}}) == {"id": 2, "result": "a"}
    assert feature.CALLS == [{"x": 1}]  # one module, imported once, its own handlers now
    assert run({"id": 3, "method": "t.lazy.a"})["result"] == "a" and len(feature.CALLS) == 2


def test_register_lazy_refuses_names_the_module_does_not_declare(table, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "t_lazy_wrong.py").write_text("from pyodide_app.rpc import rpc\n@rpc('t.wrong.a')\ndef a(params): return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "t_lazy_wrong", raising=False)
    rpc.register_lazy("t_lazy_wrong", ["t.wrong.a", "t.wrong.b"])
    reply = run({"id": 1, "method": "t.wrong.a"})
    assert reply["error"]["name"] == "RuntimeError" and "t.wrong.b" in reply["error"]["message"], reply


def test_on_demand_tables_are_what_the_modules_declare() -> None:
    for table_, dev in ((worker.ON_DEMAND, False), (worker.DEV_ON_DEMAND, True)):
        for module, names in table_.items():
            found = sorted(name for name, _ in rpc.declared(importlib.import_module(module), dev=dev))
            assert found == sorted(names), module
