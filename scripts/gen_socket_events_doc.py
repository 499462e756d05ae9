"""``python -m scripts.gen_socket_events_doc``: write docs/socket-events.md from the code.

- **Client → server.** The events ingress binds are read with :mod:`ast` from ``ingress/`` (the
  ``{event: (handler, Model)}`` tables of ``ingress/sockets.py`` and ``ingress/calls.py``), so
  nothing under ``ingress/`` is imported and no service is needed. Each payload model is imported
  from ``schemas/`` (pydantic only) and described from its JSON schema: fields, types, defaults,
  constraints, plus the comments beside each field and the messages of its validators.
- **Server → client.** Every event name the code emits (``emit(...)``, ``sio.emit(...)``,
  ``_tell(...)`` in ``ingress/``, ``workers/``, ``infra/`` and ``schemas/``) is found with
  :mod:`ast`, with where it is emitted and to which channel. The models that carry each event are
  listed in :data:`SERVER_EVENTS`; the generator refuses to run when an emitted event is missing
  from it, or when it lists an event nothing emits.

``--check`` writes nothing and exits 1 when the page differs from what the code gives
(``tests/unit/test_socket_events_doc.py`` does the same).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "socket-events.md"
COMMAND = "python -m scripts.gen_socket_events_doc"
CLIENT_DIRS = ("ingress",)
EMIT_DIRS = ("ingress", "workers", "infra", "schemas")


@dataclass(frozen=True)
class ServerEvent:
    """What the code does not say by itself: the payload models of an emitted event, and its meaning."""

    meaning: str
    models: tuple[str, ...] = ()  # "module.Class", imported from schemas/


# Every event name the code emits; the generator checks this table against the code both ways.
SERVER_EVENTS: dict[str, ServerEvent] = {
    "roomJoined": ServerEvent(
        "the answer to `joinRoom`, to the joining socket: also `history` (`newMessage` payloads) and `lastSeq`, "
        "`hasMore` after a `sinceSeq` join, `alreadyJoined: true` on a re-join"
    ),
    "userJoined": ServerEvent("someone else joined the room"),
    "roomLeft": ServerEvent("the answer to `leaveRoom`"),
    "userLeft": ServerEvent("someone else left the room, or disconnected"),
    "userTyping": ServerEvent("someone in the room started or stopped typing"),
    "newMessage": ServerEvent(
        "a message stored in a room: a user's (`kind: \"user\"`), a contact's or an operator's (`inbound`, "
        "`outbound`), the agent's (`ai`) or a tip (`tip`)",
        ("schemas.socket_events.NewMessage", "schemas.tips.TipMessage"),
    ),
    "messageRead": ServerEvent("a read mark was stored", ("schemas.socket_events.MessageRead",)),
    "creditError": ServerEvent(
        "a message, an AI reply or a tip was refused for lack of credits (or credits owed); nothing was charged",
        ("schemas.socket_events.CreditError", "schemas.tips.TipCreditError"),
    ),
    "creditWarning": ServerEvent(
        "a charge left less than one credit's worth of words", ("schemas.socket_events.CreditWarning",)
    ),
    "quotaExceeded": ServerEvent(
        "a plan's daily quota refused a message or an AI call", ("schemas.socket_events.QuotaExceeded",)
    ),
    "error": ServerEvent(
        "a refusal: of an event sent without an ack callback (by ingress), or of an accepted command the workers "
        "refused or gave up on",
        ("schemas.socket_events.CommandFailed", "schemas.tips.TipFailed"),
    ),
    "planUpdated": ServerEvent("a Stripe event changed the user's plan", ("schemas.socket_events.PlanUpdated",)),
    "creditsPurchased": ServerEvent("a purchase's credits landed", ("schemas.purchases.CreditsPurchased",)),
    "creditsRefunded": ServerEvent("a refund took credits back", ("schemas.purchases.CreditsRefunded",)),
    "tipReceived": ServerEvent("credits tipped to this user", ("schemas.tips.TipReceived",)),
    "tipSent": ServerEvent("this user's tip moved its credits", ("schemas.tips.TipSent",)),
    "walletDeposit": ServerEvent("a BEZ deposit was credited", ("schemas.chain.WalletDeposit",)),
    "messageDelta": ServerEvent("a piece of the agent's reply while it streams", ("schemas.ai.MessageDelta",)),
    "agentError": ServerEvent("the agent could not answer", ("schemas.ai.AgentError",)),
    "messageStatus": ServerEvent(
        "a message sent to a contact moved (queued, sent, delivered, read, failed)",
        ("schemas.channel_events.MessageStatus",),
    ),
    "conversationUpdated": ServerEvent(
        "a tenant's conversation changed (new message, classification, takeover)",
        ("schemas.channel_events.ConversationUpdated",),
    ),
    "incoming-call": ServerEvent("the callee is rung", ("schemas.calls.IncomingCall",)),
    "accept-call": ServerEvent("the callee accepted (relayed to the caller)", ("schemas.calls.CallPeerEvent",)),
    "reject-call": ServerEvent("the callee rejected (relayed to the caller)", ("schemas.calls.CallPeerEvent",)),
    "end-call": ServerEvent("the other party hung up", ("schemas.calls.CallPeerEvent",)),
    "call-unavailable": ServerEvent("the callee is offline or unknown", ("schemas.calls.CallPeerEvent",)),
    "signal": ServerEvent("SDP or ICE relayed from the other party", ("schemas.calls.SignalRelay",)),
    "callStarted": ServerEvent("a call's meter started", ("schemas.calls.CallStarted",)),
    "callEnded": ServerEvent("a call's meter stopped", ("schemas.calls.CallEnded",)),
    "serverShutdown": ServerEvent("the node is draining (`reconnect: true`): reconnect and join the rooms again"),
    "commandsApplied": ServerEvent(
        "internal, to a channel no socket joins: the chat sends the workers answered, which the nodes read for "
        "back-pressure"
    ),
}


# --- reading the code -------------------------------------------------------------------------


def _python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST], kinds: tuple[type, ...]) -> list[ast.AST]:
    """The enclosing nodes of the given kinds, innermost first."""
    found = []
    while node in parents:
        node = parents[node]
        if isinstance(node, kinds):
            found.append(node)
    return found


def _qualname(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    scopes = _enclosing(node, parents, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    names = [getattr(s, "name", "?") for s in reversed(scopes)]
    return ".".join(names) or "<module>"


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> "module.Name" for every ``from module import Name [as local]``."""
    return {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def _import_object(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _first_sentence(doc: str | None) -> str:
    if not doc:
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    return paragraph.replace("``", "`")


@dataclass(frozen=True)
class ClientEvent:
    event: str
    model: type[BaseModel]
    model_import: str  # the name ingress imports it as, "module.Name"
    handler: str
    handler_doc: str
    bound_in: str


def client_events() -> list[ClientEvent]:
    """The ``{event: (handler, Model)}`` tables of ingress, in the order they are written."""
    found: list[ClientEvent] = []
    for path in _python_files(*CLIENT_DIRS):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports, parents = _imports(tree), _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict) or not node.keys:
                continue
            found_rows = [_client_row(k, v, imports) for k, v in zip(node.keys, node.values, strict=True)]
            rows = [row for row in found_rows if row is not None]
            if len(rows) != len(found_rows):
                continue
            classes = _enclosing(node, parents, (ast.ClassDef,))
            cls = next((c for c in classes if isinstance(c, ast.ClassDef)), None)
            for event, model_import, handler_expr in rows:
                handler, doc = _describe_handler(handler_expr, cls)
                found.append(
                    ClientEvent(
                        event=event,
                        model=_import_object(model_import),
                        model_import=model_import,
                        handler=handler,
                        handler_doc=doc,
                        bound_in=f"{_rel(path)} ({_qualname(node, parents)})",
                    )
                )
    return sorted(found, key=lambda e: (e.bound_in.split(" ")[0] != "ingress/sockets.py", e.bound_in))


def _client_row(key: ast.expr | None, value: ast.expr, imports: dict[str, str]) -> tuple[str, str, ast.expr] | None:
    """``"event": (handler, Model)`` where Model is a pydantic model imported from schemas/."""
    if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
        return None
    if not (isinstance(value, ast.Tuple) and len(value.elts) == 2 and isinstance(value.elts[1], ast.Name)):
        return None
    dotted = imports.get(value.elts[1].id, "")
    if not dotted.startswith("schemas."):
        return None
    model = _import_object(dotted)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return key.value, dotted, value.elts[0]


def _describe_handler(expr: ast.expr, cls: ast.ClassDef | None) -> tuple[str, str]:
    """``self.join_room`` -> ("ChatSockets.join_room", its docstring's first paragraph)."""
    call_args = ""
    if isinstance(expr, ast.Call) and expr.args:  # functools.partial(self.typing, typing=True)
        call_args = ", ".join(ast.unparse(k) for k in expr.keywords)
        expr = expr.args[0]
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self" and cls:
        method = next(
            (n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == expr.attr),
            None,
        )
        doc = _first_sentence(ast.get_docstring(method)) if method else ""
        name = f"{cls.name}.{expr.attr}"
        return (f"{name}({call_args})" if call_args else name), doc
    return ast.unparse(expr), ""


# --- emitted events -----------------------------------------------------------------------------

CHANNELS = {"user_channel": "u/<userId>", "room_channel": "r/<roomId>", "tenant_channel": "t/<tenantId>"}


@dataclass
class EmitSites:
    sites: dict[str, set[str]] = field(default_factory=dict)  # path -> functions
    targets: set[str] = field(default_factory=set)
    keys: set[tuple[str, ...]] = field(default_factory=set)  # dict-literal payloads: their keys


def _string_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Module-level ``NAME = "text"`` across the scanned code, for events named by a constant."""
    seen: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                seen.setdefault(node.targets[0].id, set()).add(node.value.value)
    return {name: values.pop() for name, values in seen.items() if len(values) == 1}


def _target(expr: ast.expr | None, scope: _Scope) -> str:
    """Which channel an emit goes to, as far as the code says it plainly."""
    if expr is None:
        return "?"
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        if expr.func.id in CHANNELS:
            return CHANNELS[expr.func.id]
        helper = scope.module_functions.get(expr.func.id)
        if helper is not None:  # ``asker_channel(cmd)``: what the helper returns
            returns = [n.value for n in ast.walk(helper) if isinstance(n, ast.Return) and n.value is not None]
            found = {_target(r, _Scope(scope.module_functions, scope.constants, [helper])) for r in returns}
            return " or ".join(sorted(found))
    if isinstance(expr, ast.IfExp):
        return " or ".join(sorted({_target(expr.body, scope), _target(expr.orelse, scope)}))
    if isinstance(expr, ast.Name):
        if expr.id in scope.constants:
            return scope.constants[expr.id]
        for function in scope.functions:  # ``user = user_channel(cmd.user_id)`` earlier, innermost first
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == expr.id
                ):
                    return _target(node.value, _Scope(scope.module_functions, scope.constants, []))
    return ast.unparse(expr)


@dataclass(frozen=True)
class _Scope:
    module_functions: dict[str, ast.AST]
    constants: dict[str, str]
    functions: list[ast.AST]  # the enclosing functions, innermost first


def _dict_keys(expr: ast.expr, scope: _Scope, depth: int = 0) -> tuple[str, ...] | None:
    """The keys of a payload written as a dict literal (``**spread`` of another literal followed)."""
    if isinstance(expr, ast.Name) and depth < 3:
        for function in scope.functions:
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == expr.id
                    and isinstance(node.value, ast.Dict)
                ):
                    return _dict_keys(node.value, scope, depth + 1)
        return None
    if not isinstance(expr, ast.Dict):
        return None
    keys: list[str] = []
    for key, value in zip(expr.keys, expr.values, strict=True):
        if key is None:  # **spread
            keys += _dict_keys(value, scope, depth + 1) or ["…"]
        elif isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.append(key.value)
        else:
            keys.append("…")
    return tuple(dict.fromkeys(keys))


def emitted_events() -> dict[str, EmitSites]:
    """Every event name the code emits with a literal (or a module constant), where and to whom."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in _python_files(*EMIT_DIRS)}
    constants = _string_constants(trees)
    events: dict[str, EmitSites] = {}
    for path, tree in trees.items():
        parents = _parents(tree)
        module_functions: dict[str, ast.AST] = {
            n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name not in ("emit", "_tell"):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                event = first.value
            elif isinstance(first, ast.Name) and first.id in constants:
                event = constants[first.id]
            else:
                continue  # an event chosen at run time: each of its names is emitted literally elsewhere
            scope = _Scope(
                module_functions, constants, _enclosing(node, parents, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
            kw = {k.arg: k.value for k in node.keywords}
            if name == "_tell":
                target = CHANNELS["user_channel"]
            elif isinstance(func, ast.Name):  # schemas.emits.emit(event, room, data)
                target = _target(node.args[1] if len(node.args) > 1 else None, scope)
            elif "to" in kw:
                target = "the socket"
            else:
                target = _target(kw.get("room"), scope)
            data = node.args[1 if isinstance(func, ast.Attribute) and name == "emit" else 2 : 3]
            keys = _dict_keys(data[0], scope) if data else None
            sites = events.setdefault(event, EmitSites())
            if keys:
                sites.keys.add(keys)
            sites.sites.setdefault(_rel(path), set()).add(_qualname(node, parents))
            sites.targets.update(target.split(" or "))
    return events


# --- describing a model -------------------------------------------------------------------------


def _field_comments(cls: type[BaseModel]) -> dict[str, str]:
    """The comments written beside (or just above) each field of ``cls`` and its bases."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments: dict[int, str] = {}
        full_line: set[int] = set()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
                if not tok.line[: tok.start[1]].strip():
                    full_line.add(tok.start[0])
        body = ast.parse(source).body[0]
        for stmt in getattr(body, "body", []):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                above: list[str] = []
                line = stmt.lineno - 1
                while line in full_line:
                    above.insert(0, comments[line])
                    line -= 1
                beside = [comments[stmt.end_lineno]] if stmt.end_lineno in comments else []
                text = " ".join(above + beside)
                if text:
                    notes[stmt.target.id] = text
    return notes


def _validator_checks(cls: type[BaseModel]) -> dict[str, list[str]]:
    """Field -> the messages its field validators raise (``raise ValueError("...")``)."""
    checks: dict[str, list[str]] = {}
    for decorator in cls.__pydantic_decorators__.field_validators.values():
        func = getattr(decorator.func, "__func__", decorator.func)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError):
            continue
        messages = [
            node.exc.args[0].value
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and node.exc.args
            and isinstance(node.exc.args[0], ast.Constant)
            and isinstance(node.exc.args[0].value, str)
        ]
        for name in decorator.info.fields:
            checks.setdefault(name, []).extend(messages)
    return checks


def _wire_names(cls: type[BaseModel], mode: str) -> dict[str, str]:
    """Wire name -> Python attribute name."""
    names = {}
    for attr, info in cls.model_fields.items():
        alias = (info.serialization_alias if mode == "serialization" else info.validation_alias) or info.alias
        names[alias if isinstance(alias, str) else attr] = attr
    return names


def _not_strict(cls: type[BaseModel]) -> set[str]:
    return {
        attr
        for attr, info in cls.model_fields.items()
        if any(getattr(m, "strict", None) is False for m in info.metadata)
    }


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


class ModelWriter:
    """Renders models as field tables; nested objects go to one shared section, each once."""

    def __init__(self) -> None:
        self.nested: dict[str, tuple[dict[str, Any], str]] = {}  # title -> (schema, mode)

    def type_of(self, schema: dict[str, Any], defs: dict[str, Any], mode: str) -> str:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            target = defs[name]
            if "enum" in target:
                return "string, one of " + ", ".join(f"`{v}`" for v in target["enum"])
            title = target.get("title", name)
            known = self.nested.get(title)
            if known is not None and known[0] != target:
                raise SystemExit(f"two different nested models are both called {title}")
            self.nested[title] = (target, mode)
            return f"object [{title}](#{slug(title)})"
        if "anyOf" in schema:
            parts = [self.type_of(s, defs, mode) for s in schema["anyOf"]]
            return " or ".join(parts)
        if "const" in schema:
            return f"{_code(schema['const'])} (always)"
        if "enum" in schema:
            return f"{schema.get('type', 'value')}, one of " + ", ".join(f"`{v}`" for v in schema["enum"])
        kind = schema.get("type")
        if kind == "array":
            return "array of " + self.type_of(schema.get("items", {}), defs, mode)
        if kind == "object":
            return "object"
        return str(kind or "any")

    @staticmethod
    def constraints(schema: dict[str, Any]) -> list[str]:
        found = []
        for branch in schema.get("anyOf", [schema]):
            lo, hi = branch.get("minLength"), branch.get("maxLength")
            if lo is not None or hi is not None:
                found.append(f"{lo or 0}–{hi} characters" if hi is not None else f"at least {lo} characters")
            for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
                if key in branch:
                    found.append(f"{sign} {branch[key]:,}".replace(",", " "))
            if "pattern" in branch:
                found.append(f"matches `{branch['pattern']}`")
        return found

    def table(self, cls: type[BaseModel] | None, schema: dict[str, Any], mode: str) -> list[str]:
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        comments = _field_comments(cls) if cls else {}
        checks = _validator_checks(cls) if cls else {}
        not_strict = _not_strict(cls) if cls and mode == "validation" else set()
        attrs = _wire_names(cls, mode) if cls else {}
        inbound = mode == "validation"
        if inbound:
            lines = ["| field | type | required | constraints and notes |", "|---|---|---|---|"]
        else:
            lines = ["| field | type | notes |", "|---|---|---|"]
        for name, prop in schema.get("properties", {}).items():
            attr = attrs.get(name, name)
            notes = self.constraints(prop)
            if "default" in prop and (name not in required or not inbound):
                notes.append(f"default {_code(prop['default'])}" if inbound else f"{_code(prop['default'])} if not set")
            notes += checks.get(attr, [])
            if attr in not_strict:
                notes.append("given as its string value (not strict)")
            if prop.get("description"):
                notes.append(prop["description"])
            if attr in comments:
                notes.append(comments[attr])
            if attr != name:
                notes.append(f"`{attr}` in Python")
            cell = "; ".join(n.replace("``", "`").rstrip(".") for n in notes).replace("|", "\\|")
            kind = self.type_of(prop, defs, mode)
            needed = f" {'yes' if name in required else 'no'} |" if inbound else ""
            lines.append(f"| `{name}` | {kind} |{needed} {cell} |")
        return lines


def _schema(cls: type[BaseModel], mode: str) -> dict[str, Any]:
    return cls.model_json_schema(mode="validation" if mode == "validation" else "serialization", by_alias=True)


def _source_of(cls: type) -> str:
    return _rel(Path(inspect.getfile(cls)))


def _model_notes(cls: type[BaseModel], mode: str) -> list[str]:
    notes = []
    doc = _first_sentence(inspect.getdoc(cls) if cls.__doc__ else None)
    if doc:
        notes.append(doc)
    if mode == "validation":
        extra = cls.model_config.get("extra")
        notes.append(
            "Unknown fields are refused." if extra == "forbid" else "Unknown fields are ignored (never trusted)."
        )
        if cls.model_config.get("strict"):
            notes.append("Types are strict: a number is not accepted for a string, nor a string for a number.")
    for decorator in cls.__pydantic_decorators__.model_validators.values():
        func = getattr(decorator.func, "__func__", decorator.func)
        text = _first_sentence(inspect.getdoc(func))
        if text:
            notes.append(text)
    return notes


# --- the page ------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (github-slugger): lower case, punctuation dropped."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).lower()
    kept = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN" or c == "_")
    return kept.replace(" ", "-")


class Anchors:
    """Hands out each heading's anchor as GitHub does: a repeated slug gets -1, -2, ..."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def __call__(self, heading: str) -> str:
        base = slug(heading)
        n = self.used.get(base, 0)
        self.used[base] = n + 1
        return base if n == 0 else f"{base}-{n}"


def render() -> str:
    client = client_events()
    emitted = emitted_events()
    missing = sorted(set(emitted) - set(SERVER_EVENTS))
    stale = sorted(set(SERVER_EVENTS) - set(emitted))
    if missing or stale:
        raise SystemExit(
            "scripts/gen_socket_events_doc.py: SERVER_EVENTS is out of date: "
            + (f"emitted but not listed: {', '.join(missing)}. " if missing else "")
            + (f"listed but never emitted: {', '.join(stale)}." if stale else "")
        )
    anchors = Anchors()
    writer = ModelWriter()
    top = [
        "# Socket.IO events reference",
        "",
        f"<!-- Generated by `{COMMAND}` from schemas/ and ingress/. Do not edit by hand. -->",
        "",
        "Every Socket.IO event a client may send, the model its payload must satisfy, and the ingress",
        "handler that takes it; then every event the server emits, to whom, and the models of its",
        f"payload. This page is generated from the code by `{COMMAND}` and a unit test",
        "(`tests/unit/test_socket_events_doc.py`) fails when it is out of date. What the events do, the",
        "acks and the error codes are explained in [protocol.md](protocol.md).",
        "",
    ]
    for title in ("Client → server", "Server → client", "Nested objects"):
        anchors(title)
    body: list[str] = []

    # Client -> server.
    head = [
        "## Client → server",
        "",
        _inbound_intro(),
        "",
        "| event | payload | handler | bound in |",
        "|---|---|---|---|",
    ]
    sections: list[str] = []
    for ev in client:
        anchor = anchors(f"`{ev.event}`")
        model_name = ev.model_import.rsplit(".", 1)[1]
        shown = model_name if model_name == ev.model.__name__ else f"{model_name} (= {ev.model.__name__})"
        head.append(f"| [`{ev.event}`](#{anchor}) | `{shown}` | `{ev.handler}` | `{ev.bound_in.split(' ')[0]}` |")
        sections += [f"### `{ev.event}`", ""]
        sections.append(
            f"Payload: `{shown}` ({_source_of(ev.model)}). Handler: `{ev.handler}` in {ev.bound_in}."
            + (f" {ev.handler_doc}" if ev.handler_doc else "")
        )
        sections.append("")
        notes = _model_notes(ev.model, "validation")
        if notes:
            sections += [" ".join(notes), ""]
        sections += writer.table(ev.model, _schema(ev.model, "validation"), "validation")
        sections.append("")
    body += [*head, "", *sections]

    # Server -> client.
    head = [
        "## Server → client",
        "",
        "Channels: `u/<userId>` is every socket of one user, `r/<roomId>` every socket in a room, `t/<tenantId>` every",
        'operator of a tenant; "the socket" is the one that sent the event being answered. Payloads are the models\'',
        'JSON (`model_dump(mode="json")`): every field is sent, with the value shown as "if not set" when it has',
        "none, unless its notes say otherwise.",
        "",
        "| event | to | payload | meaning |",
        "|---|---|---|---|",
    ]
    sections = []
    for event in sorted(SERVER_EVENTS, key=str.lower):
        spec, sites = SERVER_EVENTS[event], emitted[event]
        anchor = anchors(f"`{event}`")
        models = [_import_object(m) for m in spec.models]
        payload = ", ".join(f"`{m.__name__}`" for m in models) or "no model"
        targets = ", ".join(f"`{t}`" if t != "the socket" else t for t in sorted(sites.targets))
        head.append(f"| [`{event}`](#{anchor}) | {targets} | {payload} | {spec.meaning} |")
        sections += [f"### `{event}`", "", spec.meaning[0].upper() + spec.meaning[1:] + ".", ""]
        where = [f"{path} ({', '.join(sorted(fns))})" for path, fns in sorted(sites.sites.items())]
        sections.append("Emitted in " + "; ".join(where) + ".")
        sections.append("")
        if sites.keys:
            shapes = ", ".join("`{" + ", ".join(k) + "}`" for k in sorted(sites.keys))
            lead = "Also written" if models else "No model: written"
            dynamic = " (`…`: keys the code adds at run time)" if any("…" in k for k in sites.keys) else ""
            sections += [f"{lead} as a dict in the code: {shapes}{dynamic}.", ""]
        for model in models:
            sections.append(
                f"`{model.__name__}` ({_source_of(model)})" + _joined_notes(_model_notes(model, "serialization"))
            )
            sections.append("")
            sections += writer.table(model, _schema(model, "serialization"), "serialization")
            sections.append("")
    body += [*head, "", *sections]

    # Nested objects, each once.
    nested = ["## Nested objects", ""]
    done: set[str] = set()
    while set(writer.nested) - done:
        for title in sorted(set(writer.nested) - done):
            schema, mode = writer.nested[title]
            done.add(title)
            anchors(title)
            nested += [f"### {title}", ""]
            nested += writer.table(None, schema, mode)
            nested.append("")
    page = [*top, *body, *nested]
    return "\n".join(page).rstrip("\n") + "\n"


def _joined_notes(notes: list[str]) -> str:
    return (": " + " ".join(notes)) if notes else "."


def _inbound_intro() -> str:
    from schemas.base import Inbound, Storable

    return " ".join(
        [
            "Each event's payload is validated against its model before the handler runs; a payload that fails",
            "is answered `bad_request` (in the ack, or as an `error` event without one) and the connection stays up.",
            f"Every payload model derives from `{Inbound.__name__}` ({_source_of(Inbound)}), which",
            _first_sentence(Storable.__doc__)[0].lower() + _first_sentence(Storable.__doc__)[1:],
            "Whether unknown fields are ignored or refused is said for each event.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/socket-events.md")
    args = parser.parse_args(argv)
    page = render()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != page:
            print(f"{args.output} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if current != page:
        args.output.write_text(page, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(f"{args.output} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
