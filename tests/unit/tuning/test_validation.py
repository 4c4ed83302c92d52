"""Refused keys and values give clear errors; profile errors name the file and the key."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oseprovd import errors
from oseprovd.tuning import sysctl
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.profiles import ProfileCatalog, parse_profile

from .conftest import Machine

PROTECTIONS = [
    "kernel.core_pattern", "kernel.modprobe", "fs.protected_symlinks", "fs.protected_hardlinks",
    "fs.protected_fifos", "fs.protected_regular", "fs.suid_dumpable", "kernel.yama.ptrace_scope",
    "kernel.unprivileged_bpf_disabled", "vm.mmap_min_addr", "kernel.kptr_restrict",
    "kernel.dmesg_restrict", "kernel.randomize_va_space", "kernel.perf_event_paranoid",
    "net.ipv4.conf.all.rp_filter", "kernel.sysrq",
]
PATHLIKE = [
    "../../etc/passwd", "vm/swappiness", "/proc/sys/vm/swappiness", "vm.swappiness/..",
    "vm..swappiness", ".vm.swappiness", "vm.swappiness.", "VM.SWAPPINESS", "vm.swap piness",
    "vm.swappiness\0", "vm.swappiness\n", "", "vm", "..", "vm.*", "net.core.somaxconn;id",
]


@pytest.mark.parametrize("key", PROTECTIONS)
def test_keys_that_weaken_protections_are_refused(key: str):
    with pytest.raises(errors.InvalidArguments, match="weaken the kernel's own protections"):
        sysctl.check_key(key)


@pytest.mark.parametrize("key", PATHLIKE)
def test_path_like_keys_are_refused_before_any_file_access(key: str):
    with pytest.raises(errors.InvalidArguments, match="invalid sysctl key"):
        sysctl.check_key(key)


def test_unknown_key_is_not_on_allowlist():
    with pytest.raises(errors.InvalidArguments, match="not on the tuning allowlist"):
        sysctl.check_key("kernel.hostname")


@pytest.mark.parametrize(("key", "value", "why"), [
    ("vm.swappiness", "201", "outside the allowed range 0..200"),
    ("vm.swappiness", "-1", "outside"),
    ("vm.swappiness", "ten", "expected an integer"),
    ("vm.vfs_cache_pressure", "0", "outside"),
    ("net.core.somaxconn", "99999999", "outside"),
    ("net.ipv4.tcp_rmem", "4096 87380", "three integers"),
    ("net.ipv4.tcp_rmem", "8192 4096 16384", "min <= default <= max"),
    ("net.ipv4.ip_local_port_range", "80 90", "1024 <= low"),
    ("net.core.default_qdisc", "sfq; reboot", "not one of"),
    ("net.ipv4.tcp_congestion_control", "../bbr", "not a valid name"),
])
def test_bad_values_are_refused_with_key_and_reason(key: str, value: str, why: str):
    with pytest.raises(errors.InvalidArguments, match=f"sysctl {key}: .*{why}"):
        sysctl.check_value(key, value)


@given(st.text(max_size=60))
def test_only_allowlisted_keys_pass(key: str):
    try:
        sysctl.check_key(key)
    except errors.InvalidArguments:
        return
    assert key in sysctl.ALLOWED
    assert "/" not in key and ".." not in key


@given(st.sampled_from(sorted(sysctl.ALLOWED)), st.text(max_size=40))
def test_values_pass_only_normalized_and_plain(key: str, value: str):
    try:
        out = sysctl.check_value(key, value)
    except errors.InvalidArguments as e:
        assert key in str(e)
        return
    assert out == " ".join(out.split()) and "\n" not in out and "/" not in out


def write(d: Path, name: str, text: str) -> Path:
    path = d / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "where"), [
    ('[sysctl]\n"kernel.core_pattern" = "|/bin/sh"\n', r"\[sysctl\] kernel.core_pattern: .*weaken"),
    ('[sysctl]\n"../../etc/passwd" = 1\n', r"\[sysctl\] ../../etc/passwd: invalid sysctl key"),
    ("[memory]\nswappiness = 500\n", r"\[memory\] swappiness: sysctl vm.swappiness: .*0..200"),
    ("[memory]\nswapiness = 5\n", r"\[memory\] swapiness: unknown memory setting"),
    # A revert could not write back the kernel's "0" of an unset byte form.
    ("[memory]\ndirty_bytes = 67108864\n", r"\[memory\] dirty_bytes: .*not supported.*ratio"),
    ('[sysctl]\n"vm.dirty_background_bytes" = 16777216\n',
     r"vm.dirty_background_bytes.*not supported.*'vm.dirty_background_ratio'"),
    ('[cpu]\ngovernor = "perf ormance"\n', r"\[cpu\] governor: .*not a valid governor"),
    ('[cpu]\nboost = "maybe"\n', r"\[cpu\] boost: boost is true or false"),
    ('[disk]\nscheduler = { floppy = "none" }\n', r"\[disk\] scheduler.floppy: unknown device"),
    ("[disk]\nread_ahead_kb = 99999999\n", r"\[disk\] read_ahead_kb: read_ahead_kb must be"),
    ('[limits]\nnofile = "unlimited"\n', r"\[limits\] nofile: nofile cannot be unlimited"),
    ("[limits]\ncore = 1\n", r"\[limits\] core: unknown limit"),
    ("[network]\nsomaxconn = 1.5\n", r"\[network\] somaxconn: unsupported value"),
    ("[memory]\nswappiness = 5\n[sysctl]\n\"vm.swappiness\" = 6\n", r"set twice"),
    ("[profile]\ncolour = 1\n", r"profile.colour: Extra inputs"),
    ("[profile]\nrecommend = { planet = 'mars' }\n", r"profile.recommend.planet"),
    ("[kernel]\nx = 1\n", r"unknown table\(s\) kernel"),
    ("[[override]]\nwhen = { min_memory_gib = 1 }\nmemory = { swappiness = 999 }\n",
     r"override\[0\] \[memory\] swappiness"),
    ("not toml ==", r"not valid TOML"),
])
def test_profile_errors_name_file_and_key(extra_dir: Path, text: str, where: str):
    path = write(extra_dir, "mine", text)
    catalog = ProfileCatalog(extra_dir=extra_dir)
    assert "balanced" in catalog.names()  # a broken admin file hides nothing else
    with pytest.raises(errors.InvalidArguments) as info:
        catalog.get("mine")
    assert str(path) in str(info.value)
    assert re.search(where, str(info.value)), str(info.value)


def test_include_cycle_and_unknown_include(extra_dir: Path):
    write(extra_dir, "a", '[profile]\ninclude = ["b"]\n')
    write(extra_dir, "b", '[profile]\ninclude = ["a"]\n')
    write(extra_dir, "c", '[profile]\ninclude = ["nope"]\n')
    catalog = ProfileCatalog(extra_dir=extra_dir)
    with pytest.raises(errors.InvalidArguments, match="include cycle: a -> b -> a"):
        catalog.get("a")
    with pytest.raises(errors.InvalidArguments, match="unknown profile 'nope'"):
        catalog.get("c")


def test_bad_profile_names(extra_dir: Path):
    catalog = ProfileCatalog(extra_dir=extra_dir)
    for name in ("../balanced", "Balanced", "", "a/b", "x" * 60):
        with pytest.raises(errors.InvalidArguments, match="invalid profile name"):
            catalog.get(name)
    with pytest.raises(errors.NotFound):
        catalog.get("no_such_profile")


def test_admin_profile_extends_and_overrides_shipped(extra_dir: Path, tmp_path: Path):
    write(extra_dir, "web", '[profile]\ninclude = ["server_production"]\n'
                            "[network]\nsomaxconn = 65535\n")
    m = Machine(tmp_path, extra_profiles=extra_dir)
    m.engine.apply("web", MachineFacts())
    assert m.proc("net.core.somaxconn") == "65535"
    assert m.proc("vm.swappiness") == "0"  # inherited
    info = m.engine.get_profile("web")
    assert info.includes == ["balanced", "server_production"]


def test_shipped_profiles_have_the_required_values():
    c = ProfileCatalog()
    f = MachineFacts()
    lb = c.resolve("laptop_battery", f)
    assert lb.cpu["governor"] == "powersave" and lb.sysctl["vm.swappiness"] == "10"
    assert all(p == ["none", "noop"] for p in lb.disk_scheduler.values())
    dp = c.resolve("desktop_performance", f)
    assert dp.cpu["governor"] == "performance" and dp.sysctl["vm.swappiness"] == "1"
    assert all(p == ["kyber"] for p in dp.disk_scheduler.values())
    assert dp.sysctl["net.ipv4.tcp_congestion_control"] == "bbr"
    sp = c.resolve("server_production", f)
    assert sp.cpu["governor"] == "performance" and sp.sysctl["vm.swappiness"] == "0"
    assert all(p[0] == "none" for p in sp.disk_scheduler.values())
    assert sp.sysctl["net.ipv4.tcp_congestion_control"] == "cubic"
    assert sp.sysctl["fs.file-max"] == "2097152"
    assert set(c.names()) >= {"balanced", "laptop_battery", "desktop_performance",
                              "server_production", "latency", "throughput", "virtual_guest",
                              "database_server", "aws_guest", "gcp_guest", "azure_guest"}


def test_conditional_override_follows_facts():
    c = ProfileCatalog()
    small = c.resolve("virtual_guest", MachineFacts(virtualization="kvm", memory_bytes=1 << 30))
    big = c.resolve("virtual_guest", MachineFacts(virtualization="kvm", memory_bytes=8 << 30))
    unknown = c.resolve("virtual_guest", MachineFacts(virtualization="kvm"))
    assert small.sysctl["vm.swappiness"] == "60"
    assert big.sysctl["vm.swappiness"] == "30" == unknown.sysctl["vm.swappiness"]


SCALARS = st.one_of(st.integers(-10, 10**10), st.booleans(), st.text(max_size=12),
                    st.floats(allow_nan=False), st.lists(st.integers(0, 10**8), max_size=4))
SECTION_KEYS = {
    "sysctl": st.sampled_from([*sorted(sysctl.ALLOWED)[:8], "kernel.core_pattern", "../x"]),
    "memory": st.sampled_from(["swappiness", "transparent_hugepages", "zswap", "nope"]),
    "cpu": st.sampled_from(["governor", "boost", "energy_performance_preference", "x"]),
    "network": st.sampled_from(["somaxconn", "tcp_rmem", "tcp_congestion_control", "y"]),
    "limits": st.sampled_from(["nofile", "nproc", "core"]),
    "disk": st.sampled_from(["scheduler", "read_ahead_kb", "z"]),
}


@given(st.sampled_from(sorted(SECTION_KEYS)).flatmap(
    lambda sec: st.tuples(st.just(sec), st.dictionaries(SECTION_KEYS[sec], SCALARS, max_size=3))))
def test_any_profile_content_is_either_refused_clearly_or_fully_checked(section_and_body):
    section, body = section_and_body
    try:
        text = f"[{section}]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n"
                                           for k, v in body.items())
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return  # not representable as TOML this way
    try:
        profile = parse_profile("prop", text, "/etc/ose/tuning-profiles.d/prop.toml")
    except errors.InvalidArguments as e:
        assert str(e).startswith("/etc/ose/tuning-profiles.d/prop.toml: ")
        return
    for key, value in profile.base.sysctl.items():
        assert sysctl.check_value(key, value) == value
