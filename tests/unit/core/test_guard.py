import pytest
from dbus_fast import Variant
from dbus_fast.service import ServiceInterface, method
from hypothesis import given
from hypothesis import strategies as st

from oseprovd.bus.convert import to_dbus, unwrap
from oseprovd.bus.guard import TokenBuckets, bounds_problem, check_declarations, exported
from oseprovd.bus.models import AuditQuery, ListJobsOptions
from oseprovd.config import Limits, load_settings
from oseprovd.errors import InvalidArguments

LIMITS = Limits(max_string_bytes=1024, max_array_length=100, max_depth=8)


def test_oversized_string_and_array_and_depth():
    assert bounds_problem(["x" * 1024], LIMITS) is None
    assert "longer" in bounds_problem(["x" * 1025], LIMITS)
    assert "longer" in bounds_problem(["é" * 600], LIMITS)  # 1200 bytes in UTF-8
    assert "more than 100" in bounds_problem([list(range(101))], LIMITS)
    assert "more than 100" in bounds_problem([{str(i): 1 for i in range(101)}], LIMITS)
    deep = Variant("s", "x")
    for _ in range(10):
        deep = Variant("v", deep)
    assert "deeper" in bounds_problem([deep], LIMITS)


def test_huge_array_refused_without_walking_it():
    # A 100,000-element array is refused by its length alone.
    assert bounds_problem([[0] * 100_000], Limits()) is not None


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@given(json_like)
def test_bounds_never_raise(value):
    result = bounds_problem(value, LIMITS)
    assert result is None or isinstance(result, str)


def test_token_bucket():
    b = TokenBuckets(rate=1.0, burst=3)
    assert [b.take(7, now=0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(8, now=0.0)  # per uid
    assert b.take(7, now=1.01)  # refilled by time
    assert not b.take(7, now=1.02)


def test_daemon_refuses_an_undeclared_method():
    class Leaky(ServiceInterface):
        @method()
        async def Open(self) -> "s":
            return "x"

    class Declared(ServiceInterface):
        @method()
        @exported(public=True)
        async def Fine(self) -> "s":
            return "x"

    check_declarations([Declared("a.B")])
    with pytest.raises(RuntimeError, match=r"a\.C\.Open"):
        check_declarations([Declared("a.B"), Leaky("a.C")])


def test_exported_needs_exactly_one_declaration():
    with pytest.raises(TypeError):
        exported()
    with pytest.raises(TypeError):
        exported("org.ose.x", public=True)


def test_options_refuse_unknown_keys_and_wrong_types():
    with pytest.raises(InvalidArguments, match="unknown option 'bogus'"):
        ListJobsOptions.from_dbus({"bogus": Variant("b", True)})
    with pytest.raises(InvalidArguments, match="unknown state"):
        ListJobsOptions.from_dbus({"state": Variant("s", "nope")})
    with pytest.raises(Exception, match="limit"):
        AuditQuery.from_dbus({"limit": Variant("s", "5")})
    assert ListJobsOptions.from_dbus({"state": Variant("s", "running")}).state == "running"


def test_records_convert_to_typed_variants_and_back():
    record = {"n": 3, "f": 0.5, "ok": True, "s": "x", "l": ["a"], "d": {"k": [1, 2]},
              "rows": [{"a": 1}], "empty": [], "none": None}
    out = to_dbus(record)
    assert out["n"].signature == "x" and out["f"].signature == "d"
    assert out["ok"].signature == "b" and out["l"].signature == "as"
    assert out["d"].signature == "a{sv}" and out["rows"].signature == "aa{sv}"
    assert "none" not in out
    del record["none"]
    assert unwrap(out) == record


def test_settings_file_and_flags(tmp_path):
    cfg = tmp_path / "oseprovd.toml"
    cfg.write_text('log_level = "debug"\n[limits]\nmax_depth = 4\n')
    s = load_settings(cfg, {"log_level": "warning", "root": None})
    assert s.log_level == "warning" and s.limits.max_depth == 4  # flags win
    cfg.write_text("[limits]\nbogus = 1\n")
    with pytest.raises(InvalidArguments, match="bogus"):
        load_settings(cfg, {})
    with pytest.raises(InvalidArguments, match="does not exist"):
        load_settings(tmp_path / "missing.toml", {})
