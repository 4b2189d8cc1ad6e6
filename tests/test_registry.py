"""Strict registration (src/qwire/registry.py): classes travel by a stable name and only
registered classes are ever built; nothing is imported, evaluated or called by decoding an unknown
name; dataclass schemas evolve both ways (or strictly)."""
from __future__ import annotations

import collections
import dataclasses
import enum
import pickle
import sys
import typing

import pytest

import qwire
from qwire import _core, registry
from wire import message

# ---- an audit hook, recording only while a test asks it to -------------------------------------

_EVENTS: list = []
_RECORDING = [False]


def _hook(event, args):
    if _RECORDING[0]:
        _EVENTS.append((event, args[0] if args else None))


sys.addaudithook(_hook)


class audited:
    """with audited() as events: ...  -> the audit events raised inside."""

    def __enter__(self):
        _EVENTS.clear()
        _RECORDING[0] = True
        return _EVENTS

    def __exit__(self, *exc):
        _RECORDING[0] = False


FORBIDDEN_EVENTS = {"import", "exec", "compile", "pickle.find_class", "os.system", "subprocess.Popen",
                    "builtins.input", "ctypes.dlopen", "open", "marshal.loads"}


# ---- classes ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Trade:
    sym: str
    price: float
    size: int = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    t: int
    v: float


@dataclasses.dataclass
class WithInitFalse:
    a: int
    b: list = dataclasses.field(default_factory=list)
    c: int = dataclasses.field(init=False, default=7)


@dataclasses.dataclass
class Loud:
    a: int

    def __post_init__(self):
        raise AssertionError("decoding must not call __init__ or __post_init__")


class Row(typing.NamedTuple):
    a: int
    b: str = "b"


OldRow = collections.namedtuple("OldRow", "x y", defaults=[0])


class Side(enum.Enum):
    BUY = "B"
    SELL = "S"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 4
    W = 2


class Vec:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Vec and (self.x, self.y) == (other.x, other.y)


def fresh(*classes, **named):
    r = qwire.Registry()
    for c in classes:
        r.register(c)
    for name, c in named.items():
        r.register(c, name)
    return r


def rt(x, reg, **kw):
    return qwire.loads(qwire.dumps(x, registry=reg), registry=reg, **kw)


# ---- registering ----------------------------------------------------------------------------------

def test_dataclasses_namedtuples_and_enums_register_from_their_fields_and_members():
    reg = fresh(Trade, Tick, WithInitFalse, Row, OldRow, Side, Level, Perm)
    values = [Trade("a", 1.5), Tick(1, 2.0), WithInitFalse(3, [4]), Row(1), OldRow(1), Side.SELL, Level.HIGH,
              Perm.R | Perm.W, Perm(0)]
    back = rt(values, reg)
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]
    assert back[5] is Side.SELL and back[7] is (Perm.R | Perm.W)


def test_fields_are_written_whatever_the_instance_dict_holds():
    """The encoder walks the instance dict while it holds the fields in field order, and looks
    the rest up: reordered, extra, missing-with-class-default and non-interned-key dicts agree."""
    reg = fresh(Trade)
    plain = Trade("a", 1.5, 7)
    reordered = Trade.__new__(Trade)
    reordered.size, reordered.price, reordered.sym = 7, 1.5, "a"
    extra = Trade("a", 1.5, 7)
    extra.note = "not a field"
    extra_first = Trade.__new__(Trade)
    extra_first.note = "first"
    extra_first.sym, extra_first.price, extra_first.size = "a", 1.5, 7
    class_default = Trade.__new__(Trade)          # size falls back to the class attribute (100)
    class_default.sym, class_default.price = "a", 1.5
    odd_keys = Trade.__new__(Trade)
    odd_keys.__dict__.update({"".join(["s", "ym"]): "a", "".join(["pri", "ce"]): 1.5, "size": 7})
    expected = bytes(qwire.dumps(plain, registry=reg))
    for obj in (reordered, extra, extra_first, odd_keys):
        assert bytes(qwire.dumps(obj, registry=reg)) == expected, obj.__dict__
        assert rt(obj, reg) == plain
    assert rt(class_default, reg) == Trade("a", 1.5, 100)


def test_decoding_calls_no_init():
    reg = fresh(Loud)
    obj = Loud.__new__(Loud)
    obj.a = 1
    assert rt(obj, reg).a == 1


def test_a_class_with_its_own_encode_and_decode():
    reg = qwire.Registry()
    reg.register(Vec, encode=lambda v: [v.x, v.y], decode=lambda p: Vec(*p))
    assert rt([Vec(1, 2), Vec("a", None)], reg) == [Vec(1, 2), Vec("a", None)]


def test_objects_are_written_by_stable_name_never_a_module_path():
    reg = fresh(Trade)
    data = bytes(qwire.dumps(Trade("x", 1.0), registry=reg))
    assert b"\xf5Trade\x00" in data and __name__.encode() not in data and b"test_registry" not in data
    reg2 = qwire.Registry()
    reg2.register(Trade, "com.example.Trade/v1")
    assert b"com.example.Trade/v1\x00" in bytes(qwire.dumps(Trade("x", 1.0), registry=reg2))


def test_register_returns_the_class_so_it_decorates():
    reg = qwire.Registry()

    @reg.register
    @dataclasses.dataclass
    class Decorated:
        v: int

    assert Decorated in reg and reg.name_of(Decorated) == Decorated.__qualname__
    assert reg.class_of(Decorated.__qualname__) is Decorated and len(reg) == 1


@pytest.mark.parametrize("cls, kw, error", [
    (int, {}, TypeError),
    (dict, {}, TypeError),
    (qwire.Table, {}, TypeError),
    (Vec, {}, TypeError),                                  # no fields, no codec
    (Vec, {"encode": lambda v: v}, TypeError),             # encode without decode
    (Trade("a", 1), {}, TypeError),                        # an instance, not a class
    (Trade, {"name": ""}, TypeError),
    (Trade, {"name": "a\0b"}, ValueError),
    (Trade, {"name": "x" * 300}, ValueError),
])
def test_registering_the_wrong_things_raises(cls, kw, error):
    with pytest.raises(error):
        qwire.Registry().register(cls, **kw)


def test_registering_a_class_or_a_name_twice_raises():
    reg = fresh(Trade)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Trade, "Other")
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Tick, "Trade")
    assert reg.names() == ["Trade"]


def test_registries_are_separate_and_the_default_is_used_without_one():
    @dataclasses.dataclass
    class OnlyDefault:
        v: int

    qwire.register(OnlyDefault, "tests.test_registry.OnlyDefault")
    assert qwire.loads(qwire.dumps(OnlyDefault(1))) == OnlyDefault(1)
    assert qwire.Encoder().registry is qwire.default_registry is qwire.Decoder().registry
    with pytest.raises(qwire.ForeignObjectError, match="not registered"):
        qwire.dumps(OnlyDefault(1), registry=qwire.Registry())
    with pytest.raises(qwire.UnregisteredTypeError):
        qwire.loads(qwire.dumps(OnlyDefault(1)), registry=qwire.Registry())


# ---- the handler chain ------------------------------------------------------------------------------

class Shape:
    sides = 0

    def __init__(self, size):
        self.size = size

    def __eq__(self, other):
        return type(other) is type(self) and other.size == self.size


class Square(Shape):
    sides = 4


class Triangle(Shape):
    sides = 3


class ShapeHandler(qwire.registry.Handler):
    """One handler for a whole family: every Shape subclass, by its size."""

    def handles(self, cls):
        return issubclass(cls, Shape)

    def codec(self, cls):
        return (lambda s: s.size), (lambda size: cls(size))


def test_a_handler_covers_a_family_of_classes():
    reg = qwire.Registry()
    reg.add_handler(ShapeHandler())
    reg.register(Square)
    reg.register(Triangle)
    assert rt([Square(2), Triangle(3)], reg) == [Square(2), Triangle(3)]
    with pytest.raises(qwire.ForeignObjectError):          # the family, but not registered
        qwire.dumps(Shape(1), registry=reg)


def test_handlers_added_later_come_first():
    @dataclasses.dataclass
    class Special:
        v: int

    class AsText:
        def handles(self, cls):
            return cls is Special

        def codec(self, cls):
            return (lambda s: str(s.v)), (lambda t: Special(int(t)))

    reg = qwire.Registry()
    reg.add_handler(AsText())
    reg.register(Special)
    assert b"\xf542\x00" in bytes(qwire.dumps(Special(42), registry=reg))
    assert rt(Special(42), reg) == Special(42)
    with pytest.raises(TypeError):
        reg.add_handler(object())


# ---- schema evolution ----------------------------------------------------------------------------------

@dataclasses.dataclass
class V1:
    id: int
    name: str


@dataclasses.dataclass
class V2:
    id: int
    name: str
    tags: list = dataclasses.field(default_factory=list)
    score: float = 0.5


@dataclasses.dataclass
class V0:
    id: int


@dataclasses.dataclass
class NeedsRank:
    id: int
    rank: int


def test_a_reader_with_added_fields_fills_their_defaults():
    old, new = fresh(Item=V1), fresh(Item=V2)
    got = qwire.loads(qwire.dumps(V1(1, "a"), registry=old), registry=new)
    assert got == V2(1, "a", [], 0.5)
    second = qwire.loads(qwire.dumps(V1(2, "b"), registry=old), registry=new)
    assert second.tags is not got.tags                       # a factory default, called per object


def test_a_reader_missing_fields_ignores_them():
    new, old = fresh(Item=V2), fresh(Item=V0)
    got = qwire.loads(qwire.dumps([V2(1, "a", [1], 2.0)], registry=new), registry=old)
    assert got == [V0(1)] and not hasattr(got[0], "name")


def test_strict_fields_makes_both_an_error():
    old, new = fresh(Item=V1), fresh(Item=V2)
    with pytest.raises(qwire.DecodeError, match="missing 'tags', 'score'"):
        qwire.loads(qwire.dumps(V1(1, "a"), registry=old), registry=new, strict_fields=True)
    with pytest.raises(qwire.DecodeError, match="unknown 'tags', 'score'"):
        qwire.loads(qwire.dumps(V2(1, "a"), registry=new), registry=old, strict_fields=True)
    assert qwire.loads(qwire.dumps(V1(1, "a"), registry=old), registry=old, strict_fields=True) == V1(1, "a")
    dec = qwire.Decoder(registry=new, strict_fields=True)
    assert dec.strict_fields
    with pytest.raises(qwire.DecodeError):
        dec.decode(qwire.dumps(V1(1, "a"), registry=old))


def test_a_missing_field_without_default_is_an_error():
    with pytest.raises(qwire.DecodeError, match="without field 'rank'"):
        qwire.loads(qwire.dumps(V1(1, "a"), registry=fresh(Item=V1)), registry=fresh(Item=NeedsRank))


def test_namedtuples_and_enums_evolve_too():
    class RowV2(typing.NamedTuple):
        a: int
        b: str = "b"
        c: float = 1.0

    got = qwire.loads(qwire.dumps(Row(5, "x"), registry=fresh(R=Row)), registry=fresh(R=RowV2))
    assert got == RowV2(5, "x", 1.0)

    class SideV0(enum.Enum):
        BUY = "B"

    with pytest.raises(qwire.DecodeError, match="no member named 'SELL'"):
        qwire.loads(qwire.dumps(Side.SELL, registry=fresh(S=Side)), registry=fresh(S=SideV0))


# ---- nothing runs while decoding --------------------------------------------------------------------

TOUCHED: list = []


class Spy(type):
    def __call__(cls, *args, **kw):
        TOUCHED.append("metaclass __call__")
        return super().__call__(*args, **kw)

    def __getattr__(cls, name):
        TOUCHED.append(f"class getattr {name}")
        raise AttributeError(name)


class Sentinel(metaclass=Spy):
    def __new__(cls, *args, **kw):
        TOUCHED.append("__new__")
        return super().__new__(cls)

    def __init__(self, *args, **kw):
        TOUCHED.append("__init__")

    def __setstate__(self, state):
        TOUCHED.append("__setstate__")

    def __reduce__(self):
        TOUCHED.append("__reduce__")
        return (Sentinel, ())

    def __reduce_ex__(self, protocol):
        TOUCHED.append("__reduce_ex__")
        return (Sentinel, ())

    def __init_subclass__(cls, **kw):
        TOUCHED.append("__init_subclass__")

    def __class_getitem__(cls, item):
        TOUCHED.append("__class_getitem__")


@dataclasses.dataclass
class SentinelData(Sentinel):
    secret: int = 0


def _sender():
    reg = qwire.Registry()
    reg.register(Sentinel, "tests.Sentinel", encode=lambda s: "state", decode=lambda v: Sentinel())
    reg.register(SentinelData, "tests.SentinelData")
    return reg


def test_an_unregistered_name_constructs_nothing_and_runs_nothing():
    sender = _sender()
    payload = [Sentinel(), SentinelData(3), {"nested": [SentinelData(4)]}]
    messages = [bytes(qwire.dumps(p, registry=sender, refs=refs)) for p in payload for refs in (False, True)]
    receiver = qwire.Registry()
    receiver.register(Trade)                 # knows other classes, not these
    TOUCHED.clear()
    with audited() as events:
        for m in messages:
            with pytest.raises(qwire.UnregisteredTypeError) as e:
                qwire.loads(m, registry=receiver)
            assert e.value.name in ("tests.Sentinel", "tests.SentinelData")
            assert isinstance(e.value, qwire.DecodeError) and isinstance(e.value, ValueError)
            assert e.value.offset is not None and e.value.type_code == 112
    assert TOUCHED == []
    assert not {ev for ev, _ in events} & FORBIDDEN_EVENTS


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "posix.system",
                                  "__main__.Sentinel", "collections.OrderedDict", "numpy.load", "pickle.loads",
                                  "importlib.import_module"])
def test_names_that_look_like_code_are_just_unknown_names(name):
    body = bytes.fromhex("7020 000002000000 f5") + name.encode() + b"\x00" + bytes.fromhex("f56c7300")
    mods = set(sys.modules)
    with audited() as events:
        with pytest.raises(qwire.UnregisteredTypeError, match="no class is registered"):
            qwire.loads(message(body))
    assert set(sys.modules) == mods
    assert not {ev for ev, _ in events} & FORBIDDEN_EVENTS


def test_loads_raises_no_import_exec_or_compile_events():
    reg = fresh(Trade, Tick, Row, Side, Perm)
    values = [Trade("a", 1.0), Tick(1, 2.0), Row(1), Side.BUY, Perm.R, (1, 2), {3}, 2**70, [{"x": Trade("b", 2)}]]
    blobs = [bytes(qwire.dumps(values, registry=reg, refs=refs)) for refs in (False, True)]
    with audited() as events:
        for b in blobs:
            assert qwire.loads(b, registry=reg) == values
    assert not {ev for ev, _ in events} & FORBIDDEN_EVENTS


def test_decoding_a_sentinel_registered_on_the_receiver_calls_only_its_decode():
    reg = _sender()
    m = qwire.dumps(SentinelData(5), registry=reg)
    TOUCHED.clear()
    got = qwire.loads(m, registry=reg)
    assert type(got) is SentinelData and got.secret == 5
    assert TOUCHED == ["__new__"]         # made as pickle makes it: __new__, then its fields set


# ---- registries travel with encoders and decoders ------------------------------------------------------

def test_encoders_and_decoders_pickle_with_their_registry():
    reg = fresh(Trade)
    enc = qwire.Encoder(registry=reg, refs=True)
    dec = qwire.Decoder(registry=reg, strict_fields=True)
    enc2, dec2 = pickle.loads(pickle.dumps(enc)), pickle.loads(pickle.dumps(dec))
    assert enc2.registry.names() == ["Trade"] and enc2.refs and dec2.strict_fields
    assert dec2.decode(enc2.encode(Trade("a", 1.0))) == Trade("a", 1.0)
    assert pickle.loads(pickle.dumps(qwire.default_registry)) is qwire.default_registry


def test_kinds_agree_with_the_core():
    assert _core.REGISTRY_KINDS == {"FIELDS": registry.KIND_FIELDS, "NAMEDTUPLE": registry.KIND_NAMEDTUPLE,
                                    "ENUM": registry.KIND_ENUM, "CUSTOM": registry.KIND_CUSTOM}


def test_a_registration_is_seen_by_the_next_message():
    @dataclasses.dataclass
    class Late:
        v: int

    reg = qwire.Registry()
    enc, dec = qwire.Encoder(registry=reg), qwire.Decoder(registry=reg)
    with pytest.raises(qwire.ForeignObjectError):
        enc.encode(Late(1))
    reg.register(Late)
    assert dec.decode(enc.encode(Late(1))) == Late(1)


def test_the_dataclass_record_of_docs_format_md():
    @dataclasses.dataclass
    class Trade2:
        sym: str
        price: float

    reg = qwire.Registry()
    reg.register(Trade2, "Trade")
    assert bytes(qwire.dumps(Trade2("AAPL", 1.5), registry=reg))[8:].hex() == (
        "7020" "000002000000" "f5" + b"Trade".hex() + "00"
        "63" "0b0002000000" + b"sym".hex() + "00" + b"price".hex() + "00" "000002000000"
        "f5" + b"AAPL".hex() + "00" "f7000000000000f83f")
