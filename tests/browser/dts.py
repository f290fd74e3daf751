"""A small reader of static/ping.d.ts, and a checker of values against its types.

Enough TypeScript for the declarations the page API uses: interfaces and
classes (fields, optional fields, index signatures, methods), type aliases,
unions, intersections, arrays, string and boolean literals, ``Record<K, V>``,
``Promise<T>``, function types and inline object types. Comments are dropped
before parsing. Anything else is a ``SyntaxError``: a declaration this reader
cannot follow fails the test instead of being waved through.

Values come from the page through :data:`TAG_JS` (``tag``): JSON, with
``{"$bytes": hex}`` for a ``Uint8Array``, ``{"$undefined": true}``,
``{"$function": true}`` and ``{"$class": name}`` for any other object that is
not a plain object or array (a ``Ping``, a ``ServiceWorkerRegistration``).
:meth:`Dts.check` is strict: a declared field missing, a field not declared
(unless the type has an index signature), or a JS type that differs, is an
error naming its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dts", "TAG_JS", "untag"]

# In the page: a value as JSON with the tags above (see the module docstring).
TAG_JS = """
window.hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
window.unhex = (s) => new Uint8Array(s.match(/../g)?.map((x) => parseInt(x, 16)) ?? []);
window.tag = (v) => {
  if (v === undefined) return { $undefined: true };
  if (typeof v === 'function') return { $function: true };
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return { $bytes: hex(v) };
  if (Array.isArray(v)) return v.map(tag);
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return { $class: v.constructor ? v.constructor.name : '?' };
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tag(x)]));
};
"""

_TOKEN = re.compile(r'\s*(?:(=>|\.\.\.)|("(?:[^"\\]|\\.)*")|([A-Za-z_$][\w$]*)|(\d+(?:\.\d+)?)|(\S))')
_PRIMS = {"string", "number", "boolean", "null", "undefined", "void", "unknown", "any", "never"}
_OPEN = {"(": ")", "{": "}", "[": "]", "<": ">"}

Type = tuple[Any, ...]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError(f"ping.d.ts: cannot read at {text[pos:pos + 30]!r}")
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return out


@dataclass
class Member:
    name: str
    kind: str  # "method" | "property"
    static: bool
    type: Type  # a method's return type, a property's type
    optional: bool = False


@dataclass
class Decl:
    kind: str  # "interface" | "class" | "type"
    tokens: list[str]
    members: list[Member] = field(default_factory=list)
    index: Type | None = None
    parsed: Type | None = None


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self, k: int = 0) -> str | None:
        return self.t[self.i + k] if self.i + k < len(self.t) else None

    def take(self, expect: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expect is not None and tok != expect):
            raise SyntaxError(f"ping.d.ts: expected {expect!r}, got {tok!r} near {self.t[max(0, self.i - 5):self.i + 5]}")
        self.i += 1
        return tok

    def skip_balanced(self) -> None:
        """Skip one bracketed group starting at the current token (its opener)."""
        stack = [_OPEN[self.take()]]
        while stack:
            tok = self.take()
            if tok in _OPEN:
                stack.append(_OPEN[tok])
            elif tok == stack[-1]:
                stack.pop()
            elif tok == "=>" and stack[-1] == ">":
                pass  # an arrow inside generics
        return None

    # -- types -------------------------------------------------------------------

    def type(self) -> Type:
        if self.peek() == "|":
            self.take()
        return self._joined("|", self.intersection, "union")

    def intersection(self) -> Type:
        return self._joined("&", self.postfix, "inter")

    def _joined(self, sep: str, part: Callable[[], Type], kind: str) -> Type:
        """``part (sep part)*``: one part as it is, several as ``(kind, parts)``."""
        parts = [part()]
        while self.peek() == sep:
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else (kind, parts)

    def postfix(self) -> Type:
        t = self.primary()
        while self.peek() == "[":
            self.take()
            if self.peek() == "]":
                self.take()
                t = ("array", t)
            else:
                index = self.type()
                self.take("]")
                t = ("indexed", t, index)
        return t

    def _is_function(self) -> bool:
        depth, j = 0, self.i
        while j < len(self.t):
            tok = self.t[j]
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
                if depth == 0:
                    return j + 1 < len(self.t) and self.t[j + 1] == "=>"
            j += 1
        return False

    def primary(self) -> Type:
        tok = self.peek()
        if tok == "(":
            if self._is_function():
                self.skip_balanced()
                self.take("=>")
                return ("func", self.type())
            self.take("(")
            t = self.type()
            self.take(")")
            return t
        if tok == "{":
            return self.object_type()
        if tok is not None and tok.startswith('"'):
            self.take()
            return ("lit", tok[1:-1])
        if tok in ("true", "false"):
            self.take()
            return ("lit", tok == "true")
        if tok is not None and re.fullmatch(r"\d+(\.\d+)?", tok):
            self.take()
            return ("lit", float(tok))
        if tok == "keyof":
            self.take()
            return ("keyof", self.primary())
        name = self.take()
        if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
            raise SyntaxError(f"ping.d.ts: unexpected {name!r} in a type")
        if name in _PRIMS:
            return ("prim", name)
        args: list[Type] = []
        if self.peek() == "<":
            self.take()
            args.append(self.type())
            while self.peek() == ",":
                self.take()
                args.append(self.type())
            self.take(">")
        return ("ref", name, args)

    def object_type(self) -> Type:
        self.take("{")
        fields: dict[str, tuple[Type, bool]] = {}
        index: Type | None = None
        while self.peek() != "}":
            if self.peek() == "[":
                self.take("[")
                self.take()
                self.take(":")
                self.type()
                self.take("]")
                self.take(":")
                index = self.type()
            else:
                key = self.take()
                key = key[1:-1] if key.startswith('"') else key
                optional = self.peek() == "?"
                if optional:
                    self.take()
                self.take(":")
                fields[key] = (self.type(), optional)
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        return ("object", fields, index)

    # -- class and interface bodies ---------------------------------------------------

    def members(self) -> tuple[list[Member], Type | None]:
        """The members of a class or interface body (tokens between its braces), and its index signature's type."""
        out = []
        index: Type | None = None
        while self.peek() is not None:
            static = readonly = False
            while self.peek() in ("static", "readonly", "declare") and self.peek(1) not in ("(", ":", "?", "<"):
                word = self.take()
                static = static or word == "static"
                readonly = readonly or word == "readonly"
            if self.peek() == "[":  # an index signature
                self.skip_balanced()
                self.take(":")
                index = self.type()
                self.take(";")
                continue
            name = self.take()
            name = name[1:-1] if name.startswith('"') else name
            optional = self.peek() == "?"
            if optional:
                self.take()
            if self.peek() == "<":
                self.skip_balanced()
            if self.peek() == "(":
                self.skip_balanced()
                ret: Type = ("prim", "void")
                if self.peek() == ":":
                    self.take()
                    ret = self.type()
                out.append(Member(name, "method", static, ret, optional))
            else:
                self.take(":")
                out.append(Member(name, "property", static, self.type(), optional))
            self.take(";")
        return out, index


class Dts:
    """The declarations of a .d.ts text, and a strict value checker for them."""

    def __init__(self, text: str) -> None:
        self.decls: dict[str, Decl] = {}
        t = _tokens(_strip_comments(text))
        i = 0
        while i < len(t):
            if t[i] in ("interface", "class") and i + 1 < len(t):
                kind, name = t[i], t[i + 1]
                j = t.index("{", i)
                p = _Parser(t)
                p.i = j
                p.skip_balanced()
                self.decls[name] = Decl(kind, t[j + 1 : p.i - 1])
                i = p.i
            elif t[i] == "type" and i > 0 and t[i - 1] == "export":
                name = t[i + 1]
                j = i + 3  # type Name =
                depth, k = 0, j
                while not (t[k] == ";" and depth == 0):
                    depth += (t[k] in _OPEN) - (t[k] in _OPEN.values())
                    k += 1
                self.decls[name] = Decl("type", t[j:k])
                i = k
            else:
                i += 1
        for decl in self.decls.values():
            if decl.kind in ("interface", "class"):
                decl.members, decl.index = _Parser(decl.tokens).members()

    # -- what the page API declares -------------------------------------------------------

    def methods(self, cls: str) -> set[str]:
        """The method names (static and instance) of class ``cls``."""
        return {m.name for m in self.decls[cls].members if m.kind == "method" and m.name != "constructor"}

    def public_methods(self) -> set[str]:
        """Every method of every declared class (the page API's callable surface)."""
        return {n for name, d in self.decls.items() if d.kind == "class" for n in self.methods(name)}

    def returns(self, cls: str, method: str) -> Type:
        """What a method resolves with: its return type without ``Promise<>`` (overloads must agree)."""
        found = [m.type for m in self.decls[cls].members if m.kind == "method" and m.name == method]
        if not found or any(t != found[0] for t in found):
            raise KeyError(f"{cls}.{method}: {len(found)} declarations")
        t = found[0]
        if t[0] == "ref" and t[1] == "Promise":
            inner: Type = t[2][0]
            return inner
        return t

    def property(self, cls: str, name: str) -> Type:
        return next(m.type for m in self.decls[cls].members if m.kind == "property" and m.name == name)

    def event(self, type_name: str) -> Type:
        """The declared shape of an event of ``type_name`` (a key of PingEventMap)."""
        shape: Type = self._resolve(("ref", "PingEventMap", []))[1][type_name][0]
        return shape

    def event_types(self) -> set[str]:
        return set(self._resolve(("ref", "PingEventMap", []))[1])

    # -- resolving names ------------------------------------------------------------------

    def _resolve(self, t: Type) -> Type:
        """A reference to a declared interface or alias, as its structure (one level)."""
        while t[0] == "ref" and t[1] in self.decls and self.decls[t[1]].kind != "class":
            decl = self.decls[t[1]]
            if decl.parsed is None:
                if decl.kind == "type":
                    decl.parsed = _Parser(decl.tokens).type()
                else:
                    fields = {m.name: (m.type if m.kind == "property" else ("func", m.type), m.optional)
                              for m in decl.members}
                    decl.parsed = ("object", fields, decl.index)
            t = decl.parsed
        return t

    def _object(self, t: Type) -> Type | None:
        """``t`` as one object type (intersections merged), None when it is not one."""
        t = self._resolve(t)
        if t[0] == "object":
            return t
        if t[0] == "inter":
            fields: dict[str, tuple[Type, bool]] = {}
            index = None
            for part in t[1]:
                obj = self._object(part)
                if obj is None:
                    return None
                fields.update(obj[1])
                index = obj[2] or index
            return ("object", fields, index)
        return None

    # -- checking -------------------------------------------------------------------------

    def check(self, value: Any, t: Type, path: str = "$") -> list[str]:
        """Where the tagged ``value`` differs from type ``t`` (empty: it conforms)."""
        t = self._resolve(t)
        kind = t[0]
        tagged = isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith("$")
        if kind == "prim":
            name = t[1]
            ok = {
                "string": isinstance(value, str),
                "number": isinstance(value, (int, float)) and not isinstance(value, bool),
                "boolean": isinstance(value, bool),
                "null": value is None,
                "undefined": value == {"$undefined": True},
                "void": value == {"$undefined": True},
                "unknown": True,
                "any": True,
                "never": False,
            }[name]
            return [] if ok else [f"{path}: {_show(value)} is not {name}"]
        if kind == "lit":
            same = value == t[1] and type(value) is type(t[1])
            return [] if same else [f"{path}: {_show(value)} is not {t[1]!r}"]
        if kind == "func":
            return [] if value == {"$function": True} else [f"{path}: {_show(value)} is not a function"]
        if kind == "array":
            if not isinstance(value, list):
                return [f"{path}: {_show(value)} is not an array"]
            return [e for i, v in enumerate(value) for e in self.check(v, t[1], f"{path}[{i}]")]
        if kind == "union":
            results = [self.check(value, part, path) for part in t[1]]
            if any(not r for r in results):
                return []
            return min(results, key=len)
        if kind in ("object", "inter"):
            obj = self._object(t)
            if obj is None:
                raise SyntaxError(f"ping.d.ts: cannot check {t}")
            if not isinstance(value, dict) or tagged:
                return [f"{path}: {_show(value)} is not an object"]
            errors = []
            for key, (ftype, optional) in obj[1].items():
                if key not in value or value[key] == {"$undefined": True}:
                    if not optional:
                        errors.append(f"{path}.{key}: missing")
                    continue
                errors += self.check(value[key], ftype, f"{path}.{key}")
            for key in value.keys() - obj[1].keys():
                if obj[2] is None:
                    errors.append(f"{path}.{key}: not declared")
                else:
                    errors += self.check(value[key], obj[2], f"{path}.{key}")
            return errors
        if kind == "ref":
            name, args = t[1], t[2]
            if name == "Uint8Array":
                ok = isinstance(value, dict) and isinstance(value.get("$bytes"), str) and len(value) == 1
                return [] if ok else [f"{path}: {_show(value)} is not a Uint8Array"]
            if name == "Record":
                if not isinstance(value, dict) or tagged:
                    return [f"{path}: {_show(value)} is not a record"]
                return [e for k, v in value.items() for e in self.check(k, args[0], f"{path}<key>")
                        + self.check(v, args[1], f"{path}.{k}")]
            if name == "Promise":
                return [f"{path}: a Promise never crosses (await it)"]
            # A declared class or a DOM class: an instance of that name.
            return [] if value == {"$class": name} else [f"{path}: {_show(value)} is not a {name}"]
        raise SyntaxError(f"ping.d.ts: cannot check a {kind} type")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def untag(value: Any) -> Any:
    """A tagged value as plain Python: bytes for ``$bytes``, None for ``$undefined``."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$undefined"}:
            return None
        return {k: untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value
