"""The SOQL subset the sandbox answers: enough for an adapter's detection and lookups.

``SELECT`` a field list (or ``COUNT()``) ``FROM`` one object, ``WHERE`` with
comparisons, ``IN``/``NOT IN``, ``LIKE``, ``AND``/``OR``/``NOT`` and parentheses,
``ORDER BY`` several fields, ``LIMIT`` and ``OFFSET``.  Values are typed as SOQL types
them: a dateTime field takes an unquoted ``2026-01-01T00:00:00Z``, a date field an
unquoted ``2026-01-01``, strings are quoted.  What is outside the subset (relationship
paths, aggregates, date functions) is refused as ``MALFORMED_QUERY`` or
``INVALID_FIELD`` naming the token, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    STRING_TYPES,
    Field,
    SObject,
    parse_date,
    parse_datetime,
    to_id18,
)


class SoqlError(Exception):
    """A refused query: the Salesforce error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _malformed(message: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", message)


# --------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?)
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "NULL",
    "TRUE",
    "FALSE",
    "COUNT",
}


@dataclass(frozen=True)
class Token:
    """A lexical token: kind (ident, string, number, datetime, date, op, punct, end)."""

    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """The tokens of a query; an unknown character is MALFORMED_QUERY at its column."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise _malformed(f"unexpected token: '{text[pos : pos + 10]}' at column {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt not in _ESCAPES and nxt not in "%_":
                raise _malformed(
                    f"Invalid string literal '{raw}'. Illegal character sequence '\\{nxt}'"
                )
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Literal:
    """A value in a condition, with the SOQL type its spelling gives it."""

    kind: str  # string, number, datetime, date, boolean, null
    value: Any
    text: str


@dataclass(frozen=True)
class Comparison:
    """``field op value``, ``field [NOT] IN (...)`` or ``field LIKE 'pattern'``."""

    field: str
    op: str  # = != < <= > >= in notin like
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    """``AND``/``OR`` over parts, or ``NOT`` over one."""

    op: str
    parts: tuple[Condition, ...]


Condition = Comparison | BoolOp


@dataclass(frozen=True)
class OrderItem:
    """One ``ORDER BY`` key."""

    field: str
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    """A parsed query, before it is checked against an object's fields."""

    fields: list[str]
    object_name: str
    count: bool = False
    where: Condition | None = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.text.upper() == word

    def expect_kw(self, word: str) -> None:
        tok = self.next()
        if not (tok.kind == "ident" and tok.text.upper() == word):
            raise self.unexpected(tok)

    def expect_punct(self, ch: str) -> None:
        tok = self.next()
        if tok.text != ch or tok.kind != "punct":
            raise self.unexpected(tok)

    def unexpected(self, tok: Token) -> SoqlError:
        if tok.kind == "end":
            return _malformed("unexpected token: <EOF>")
        return _malformed(
            f"\n{self.text}\n{' ' * tok.pos}^\nERROR at Row:1:Column:{tok.pos + 1}\n"
            f"unexpected token: '{tok.text}'"
        )

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident" or tok.text.upper() in _KEYWORDS:
            raise self.unexpected(tok)
        return tok.text

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[str] = []
        count = False
        if self.is_kw("COUNT"):
            self.next()
            self.expect_punct("(")
            if self.peek().text != ")":
                self.ident()  # COUNT(Id) counts rows like COUNT()
            self.expect_punct(")")
            count = True
        else:
            fields.append(self.ident())
            while self.peek().text == ",":
                self.next()
                fields.append(self.ident())
        self.expect_kw("FROM")
        query = Query(fields, self.ident(), count=count)
        if self.is_kw("WHERE"):
            self.next()
            query.where = self.condition()
        if self.is_kw("ORDER"):
            self.next()
            self.expect_kw("BY")
            query.order.append(self.order_item())
            while self.peek().text == ",":
                self.next()
                query.order.append(self.order_item())
        if self.is_kw("LIMIT"):
            self.next()
            query.limit = self.integer()
        if self.is_kw("OFFSET"):
            self.next()
            query.offset = self.integer()
            if query.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok)
        return query

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.unexpected(tok)
        return int(tok.text)

    def order_item(self) -> OrderItem:
        name = self.ident()
        descending = False
        if self.is_kw("ASC") or self.is_kw("DESC"):
            descending = self.next().text.upper() == "DESC"
        # SOQL's default: nulls first (ascending or not) unless NULLS LAST is given
        nulls_last = False
        if self.is_kw("NULLS"):
            self.next()
            tok = self.next()
            if tok.kind != "ident" or tok.text.upper() not in ("FIRST", "LAST"):
                raise self.unexpected(tok)
            nulls_last = tok.text.upper() == "LAST"
        return OrderItem(name, descending, nulls_last)

    def condition(self) -> Condition:
        parts = [self.term()]
        ops: set[str] = set()
        while self.is_kw("AND") or self.is_kw("OR"):
            ops.add(self.next().text.upper())
            parts.append(self.term())
        if len(ops) > 1:
            # SOQL refuses mixing AND and OR without parentheses
            raise _malformed(
                "unexpected token: 'OR' (use parentheses to mix AND and OR in a WHERE clause)"
            )
        if len(parts) == 1:
            return parts[0]
        return BoolOp(ops.pop(), tuple(parts))

    def term(self) -> Condition:
        if self.is_kw("NOT"):
            self.next()
            return BoolOp("NOT", (self.term(),))
        if self.peek().text == "(" and self.peek().kind == "punct":
            self.next()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        name = self.ident()
        tok = self.next()
        if tok.kind == "op":
            op = "!=" if tok.text == "<>" else tok.text
            return Comparison(name, op, (self.literal(),))
        word = tok.text.upper() if tok.kind == "ident" else ""
        if word == "LIKE":
            value = self.literal()
            if value.kind != "string":
                raise _malformed(f"LIKE needs a quoted pattern, got {value.text}")
            return Comparison(name, "like", (value,))
        negate = False
        if word == "NOT":
            negate = True
            tok = self.next()
            word = tok.text.upper() if tok.kind == "ident" else ""
        if word == "IN":
            self.expect_punct("(")
            values = [self.literal()]
            while self.peek().text == ",":
                self.next()
                values.append(self.literal())
            self.expect_punct(")")
            return Comparison(name, "notin" if negate else "in", tuple(values))
        raise self.unexpected(tok)

    def literal(self) -> Literal:
        tok = self.next()
        if tok.kind == "string":
            return Literal("string", _unquote(tok.text), tok.text)
        if tok.kind == "number":
            return Literal("number", float(tok.text), tok.text)
        if tok.kind == "datetime":
            return Literal("datetime", parse_datetime(tok.text), tok.text)
        if tok.kind == "date":
            day = parse_date(tok.text)
            if day is None:
                raise _malformed(f"invalid date: {tok.text}")
            return Literal("date", day, tok.text)
        if tok.kind == "ident":
            word = tok.text.upper()
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", tok.text)
            if word == "NULL":
                return Literal("null", None, tok.text)
        raise self.unexpected(tok)


def parse(text: str) -> Query:
    """Parse a query (syntax only); SoqlError MALFORMED_QUERY on bad syntax."""
    if not text or not text.strip():
        raise _malformed("unexpected token: <EOF>")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- checking


def _no_such_column(name: str, obj: SObject) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name. Please "
        "reference your WSDL or the describe call for the appropriate names.",
    )


def resolve(obj: SObject, name: str) -> Field:
    """The field a SOQL name means; INVALID_FIELD naming it when the object has none
    (relationship paths like ``Account.Name`` are outside the subset)."""
    f = obj.field(name)
    if f is None:
        raise _no_such_column(name, obj)
    return f


def _type_error(f: Field, wanted: str, quoted: bool) -> SoqlError:
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return SoqlError(
        "INVALID_FIELD",
        f"value of filter criterion for field '{f.name}' must be of type {wanted} and {how}",
    )


def coerce_literal(f: Field, lit: Literal) -> Any:
    """The literal as the field's type compares it; INVALID_FIELD when SOQL would refuse
    the spelling (a quoted dateTime, an unquoted string...)."""
    if lit.kind == "null":
        return None
    t = f.type
    if t == "datetime":
        if lit.kind == "datetime":
            return lit.value
        raise _type_error(f, "dateTime", False)
    if t == "date":
        if lit.kind == "date":
            return lit.value
        raise _type_error(f, "date", False)
    if t == "boolean":
        if lit.kind == "boolean":
            return lit.value
        raise _type_error(f, "boolean", False)
    if t in NUMBER_TYPES:
        if lit.kind == "number":
            return lit.value
        raise _type_error(f, "double" if t != "int" else "int", False)
    if lit.kind != "string":
        raise _type_error(f, "string", True)
    if t in ("id", "reference"):
        id18 = to_id18(lit.value)
        if id18 is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")
        return id18
    return str(lit.value).casefold()


def field_value(f: Field, raw: Any) -> Any:
    """A stored value in the same comparable form as :func:`coerce_literal`'s."""
    if raw is None:
        return None
    if f.type == "datetime":
        return parse_datetime(raw)
    if f.type == "date":
        return parse_date(raw)
    if f.type in NUMBER_TYPES:
        return float(raw)
    if f.type in STRING_TYPES:
        return str(raw).casefold()
    return raw


def _like(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 2
            continue
        out += ".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
        i += 1
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


Predicate = Callable[[dict[str, Any]], bool]


def compile_condition(obj: SObject, cond: Condition) -> Predicate:
    """A predicate over stored records (dicts keyed by canonical field name)."""
    if isinstance(cond, BoolOp):
        parts = [compile_condition(obj, p) for p in cond.parts]
        if cond.op == "NOT":
            return lambda r: not parts[0](r)
        if cond.op == "AND":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    f = resolve(obj, cond.field)
    name = f.name
    if cond.op == "like":
        if f.type not in STRING_TYPES:
            raise SoqlError(
                "INVALID_FIELD",
                f"invalid operator on {f.type} field: {f.name} (LIKE takes text fields only)",
            )
        rx = _like(str(cond.values[0].value))
        return lambda r: r.get(name) is not None and bool(rx.match(str(r[name])))
    wanted = [coerce_literal(f, v) for v in cond.values]
    if cond.op in ("in", "notin"):
        members = set(wanted)
        if cond.op == "in":
            return lambda r: field_value(f, r.get(name)) in members
        return lambda r: field_value(f, r.get(name)) not in members
    target = wanted[0]
    op = cond.op
    if target is None:
        if op not in ("=", "!="):
            raise _malformed(f"null can only be compared with = or != (field {f.name})")
        return (lambda r: r.get(name) is None) if op == "=" else (lambda r: r.get(name) is not None)

    def compare(r: dict[str, Any]) -> bool:
        value = field_value(f, r.get(name))
        if op == "=":
            return bool(value == target)
        if op == "!=":
            return bool(value != target)
        if value is None:
            return False  # SOQL: a null is neither less nor greater than anything
        if op == "<":
            return bool(value < target)
        if op == "<=":
            return bool(value <= target)
        if op == ">":
            return bool(value > target)
        return bool(value >= target)

    return compare


def _sort_key(f: Field, item: OrderItem) -> Callable[[dict[str, Any]], Any]:
    def key(r: dict[str, Any]) -> Any:
        value = field_value(f, r.get(f.name))
        if value is None:
            return (0,)
        if isinstance(value, bool):
            value = int(value)
        return (1, value)

    return key


def sort_records(obj: SObject, order: list[OrderItem], rows: list[dict[str, Any]]) -> None:
    """Sort in place by the ORDER BY keys (stable, last key first)."""
    for item in reversed(order):
        f = resolve(obj, item.field)
        if f.type == "textarea":
            raise SoqlError(
                "INVALID_FIELD",
                f"field '{f.name}' can not be sorted in a query call",
            )
        key = _sort_key(f, item)
        nulls = [r for r in rows if r.get(f.name) is None]
        rest = [r for r in rows if r.get(f.name) is not None]
        rest.sort(key=key, reverse=item.descending)
        rows[:] = rest + nulls if item.nulls_last else nulls + rest


@dataclass
class Plan:
    """A checked query: the object, the output fields and how to filter and sort."""

    obj: SObject
    fields: list[Field]
    count: bool
    predicate: Predicate | None
    order: list[OrderItem]
    limit: int | None
    offset: int


def plan(query: Query, objects: dict[str, SObject]) -> Plan:
    """Check a parsed query against the org's objects: INVALID_TYPE for an unknown
    object, INVALID_FIELD for an unknown field, a duplicate or a mistyped value."""
    obj = next((o for n, o in objects.items() if n.lower() == query.object_name.lower()), None)
    if obj is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"\nFROM {query.object_name}\n     ^\nERROR at Row:1:Column:1\n"
            f"sObject type '{query.object_name}' is not supported. If you are attempting to "
            "use a custom object, be sure to append the '__c' after the entity name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )
    fields: list[Field] = []
    for name in query.fields:
        f = resolve(obj, name)
        if any(g.name == f.name for g in fields):
            raise SoqlError("INVALID_FIELD", f"duplicate field selected: {f.name}")
        fields.append(f)
    predicate = compile_condition(obj, query.where) if query.where is not None else None
    for item in query.order:
        resolve(obj, item.field)
    return Plan(obj, fields, query.count, predicate, query.order, query.limit, query.offset)


def run(p: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Filter, sort, offset and limit stored rows (the caller projects the fields)."""
    out = [r for r in rows if p.predicate is None or p.predicate(r)]
    if p.order:
        sort_records(p.obj, p.order, out)
    out = out[p.offset :]
    if p.limit is not None:
        out = out[: p.limit]
    return out
