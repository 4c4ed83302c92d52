"""osectl discover [WHAT], osectl scan, osectl report list|show|diff."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from osectl.context import Ctx, follow_job, pass_ctx
from osectl.errors import CliError
from osectl.render import Output
from oseprovd.bus.names import IFACE_DISCOVERY, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_DISCOVERY]

METHODS = {
    "hardware": "GetHardware", "software": "GetSoftware", "network": "GetNetwork",
    "cloud": "GetCloud", "containers": "GetContainers", "databases": "GetDatabases",
    "services": "GetServices", "security": "GetSecurity",
}
# `all` (Describe's default subset) is every section but the security audit: that needs
# its own authorization, so it is asked for by name.
META = ("started_at", "finished_at", "duration_ms", "subset", "collectors", "outcomes")


def _call(ctx: Ctx, member: str, signature: str = "", *body: Any) -> Any:
    return ctx.client.call(PATH, IFACE_DISCOVERY, member, signature, body, timeout=180.0)


def merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Several Get* answers as one report: sections side by side, one outcome each."""
    merged: dict[str, Any] = {"collectors": [], "outcomes": []}
    seen: set[str] = set()
    for answer in answers:
        for outcome in answer.get("outcomes", []):
            if outcome["name"] not in seen:
                seen.add(outcome["name"])
                merged["collectors"].append(outcome["name"])
                merged["outcomes"].append(outcome)
        merged.update({k: v for k, v in answer.items() if k not in META})
    return merged


def discover_all(ctx: Ctx, whats: tuple[str, ...]) -> dict[str, Any]:
    return merge([_call(ctx, METHODS[w]) for w in whats])


def describe(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """Every section but the security audit in one call: the daemon's JSON text (keys
    sorted, as `--json` prints) and the object it holds. One reply decoded by the C
    json module instead of seven typed answers walked by the wire decoder."""
    text = _call(ctx, "Describe", "a{sv}", {})
    try:
        report = json.loads(text)
    except (TypeError, ValueError):
        report = None
    if not isinstance(report, dict):
        raise CliError("org.ose.Client.ProtocolError",
                       "the daemon's Describe answer is not a JSON object")
    return text, report


# --- human rendering, one function per section ------------------------------------------

def _size(n: Any) -> str:
    return "-" if n in (None, "") else _bytes(n)


def _bytes(n: Any) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _cpu(out: Output, s: dict[str, Any]) -> None:
    out.record({**s, "topology": f"{s.get('sockets', '?')} socket(s), {s.get('cores', '?')} "
                f"cores, {s.get('threads_per_core', '?')} thread(s)/core",
                "mhz": "/".join(f"{s[k]:g}" for k in ("min_mhz", "current_mhz", "max_mhz")
                                if k in s) or "-",
                "cache": ", ".join(f"L{c['level']} {c.get('type', '')} {c['size_kib']} KiB"
                                   for c in s.get("caches", [])),
                "numa": len(s.get("numa_nodes", []))}, "CPU", [
        ("model_name", "Model", None), ("vendor", "Vendor", None),
        ("architecture", "Architecture", None), ("logical_cpus", "Logical CPUs", None),
        ("topology", "Topology", None), ("mhz", "MHz (min/now/max)", None),
        ("cache", "Caches", None), ("numa", "NUMA nodes", None),
        ("hypervisor_flag", "Hypervisor bit", None)])


def _memory(out: Output, s: dict[str, Any]) -> None:
    out.record(s, "Memory", [
        ("total_bytes", "Total", "bytes"), ("available_bytes", "Available", "bytes"),
        ("swap_total_bytes", "Swap", "bytes"), ("swap_free_bytes", "Swap free", "bytes"),
        ("hugepages_total", "Huge pages", None)])
    dimms = [{**d, "size": _size(d.get("size_bytes")) if d.get("installed") else "empty"}
             for d in s.get("dimms", [])]
    if dimms:
        out.table(dimms, "Memory devices (DMI)", [
            ("locator", "Slot", None), ("size", "Size", None), ("type", "Type", None),
            ("speed_mts", "MT/s", None), ("manufacturer", "Maker", None),
            ("part_number", "Part", None)], "")
    elif s.get("dimm_table") == "denied":
        out.message("Memory devices: the DMI table needs root")


def _block(out: Output, s: dict[str, Any]) -> None:
    rows = [{**d, "size": _size(d.get("size_bytes")),
             "parts": len(d.get("partitions", [])),
             "mounted": ", ".join(m["mountpoint"] for p in [d, *d.get("partitions", [])]
                                  for m in p.get("mounts", [])) or "-"}
            for d in s.get("devices", []) if d.get("size_bytes")]
    out.table(rows, "Block devices (empty ones left out)", [
        ("name", "Device", None), ("size", "Size", None), ("transport", "Transport", None),
        ("model", "Model", None), ("serial", "Serial", None), ("rotational", "Rotational", None),
        ("scheduler", "Scheduler", None), ("parts", "Partitions", None),
        ("mounted", "Mounted at", None)], "No block devices.")


def _mounts(out: Output, s: dict[str, Any]) -> None:
    rows = [m for m in s.get("mounts", []) if not m.get("pseudo")]
    out.table(rows, "File systems (pseudo file systems left out)", [
        ("mountpoint", "Mount point", None), ("source", "Source", None),
        ("fstype", "Type", None), ("options", "Options", None), ("remote", "Remote", None)],
        "No file systems.")


def _nics(out: Output, s: dict[str, Any]) -> None:
    out.table(s.get("interfaces", []), "Network interfaces", [
        ("name", "Interface", None), ("kind", "Kind", None), ("driver", "Driver", None),
        ("speed_mbps", "Mbit/s", None), ("mac", "MAC", None), ("operstate", "State", None)],
        "No interfaces.")


def _gpus(out: Output, s: dict[str, Any]) -> None:
    out.table(s.get("gpus", []), "GPUs", [
        ("slot", "Slot", None), ("vendor", "Vendor", None), ("model", "Model", None),
        ("driver", "Driver", None), ("boot_vga", "Boot VGA", None)], "No GPUs.")


def _power(out: Output, s: dict[str, Any]) -> None:
    out.table(s.get("supplies", []), "Power supplies", [
        ("name", "Name", None), ("type", "Type", None), ("status", "Status", None),
        ("capacity_percent", "Charge %", None), ("health_percent", "Health %", None),
        ("online", "Online", None)], "No batteries or power supplies.")


def _dmi(out: Output, s: dict[str, Any]) -> None:
    if not s.get("available"):
        out.message("Firmware (DMI): not available (a container, or no SMBIOS table)")
        return
    out.record(s, "Firmware (DMI)", [
        ("sys_vendor", "Vendor", None), ("product_name", "Product", None),
        ("product_serial", "Serial", None), ("product_uuid", "UUID", None),
        ("board_name", "Board", None), ("chassis_type_name", "Chassis", None),
        ("bios_vendor", "BIOS vendor", None), ("bios_version", "BIOS version", None),
        ("bios_date", "BIOS date", None)])


def _virt(out: Output, s: dict[str, Any]) -> None:
    out.record(s, "Virtualization", [
        ("virtualized", "Virtualized", None), ("vm", "Hypervisor", None),
        ("container", "Container", None), ("evidence", "Evidence", None)])


def _cloud(out: Output, s: dict[str, Any]) -> None:
    out.record(s, "Cloud", [("status", "Detected", None), ("provider", "Provider", None),
                            ("evidence", "Evidence", None)])


def _os(out: Output, s: dict[str, Any]) -> None:
    kernel = s.get("kernel", {})
    out.record({**s, "kernel_release": f"{kernel.get('release', '?')} "
                f"({kernel.get('architecture', '?')})"}, "Operating system", [
        ("pretty_name", "OS", None), ("kernel_release", "Kernel", None),
        ("hostname", "Host name", None), ("init_system", "Init", None),
        ("boot_mode", "Boot", None), ("secure_boot", "Secure Boot", None),
        ("timezone", "Time zone", None), ("machine_id", "Machine ID", None)])


def _packages(out: Output, s: dict[str, Any]) -> None:
    pkgs = s.get("packages", [])
    manual = sum(1 for p in pkgs if not p.get("auto_installed"))
    size = sum(int(p.get("installed_size_kib", 0)) for p in pkgs) * 1024
    out.record({"manager": s.get("manager"), "count": len(pkgs), "manual": manual,
                "size": _bytes(size)}, "Packages (the list: --json)", [
        ("manager", "Manager", None), ("count", "Installed", None),
        ("manual", "Installed by hand", None), ("size", "Installed size", None)])
    other = s.get("other_managers", {})
    for name, key in (("rpm", "rpm_packages"), ("flatpak", "flatpaks"), ("snap", "snaps")):
        state = other.get(name, {})
        if state.get("state") == "read":
            out.message(f"{name}: {len(other.get(key, []))} packages")
        elif state.get("state") == "error":
            out.message(f"{name}: could not be read ({state.get('error')})")


def _services(out: Output, s: dict[str, Any]) -> None:
    units = s.get("systemd_units", [])
    states: dict[str, int] = {}
    for u in units:
        states[u.get("state", "?")] = states.get(u.get("state", "?"), 0) + 1
    out.message(f"{len(units)} systemd unit files: " + ", ".join(
        f"{n} {state}" for state, n in sorted(states.items())))
    if s.get("systemd_running"):
        active = sum(1 for u in units if u.get("active_state") == "active")
        out.message(f"systemd: {active} of them active, "
                    f"{len(s.get('runtime_only_units', []))} more units loaded without a file")
    elif s.get("systemd_error"):
        out.message(f"systemd could not be asked: {s['systemd_error']}")
    enabled = [u for u in units if u.get("state") == "enabled"]
    columns = [("name", "Unit", None), ("description", "Description", None),
               ("wanted_by", "Wanted by", None)]
    if s.get("systemd_running"):
        columns.append(("sub_state", "Now", None))
    out.table(enabled, "Enabled units", columns, "No enabled units.")
    out.table(s.get("init_scripts", []), "SysV init scripts", [
        ("name", "Script", None), ("start_runlevels", "Runlevels", None),
        ("has_systemd_unit", "Has a unit", None)], "No SysV init scripts.")
    if s.get("supervisor_programs"):
        out.table(s["supervisor_programs"], "supervisord programs", [
            ("name", "Program", None), ("command", "Command", None)], "")


def _applications(out: Output, s: dict[str, Any]) -> None:
    out.message(f"{len(s.get('applications', []))} desktop applications (the list: --json)")
    out.table(s.get("runtimes", []), "Language runtimes", [
        ("name", "Runtime", None), ("version", "Version", None), ("binary", "Binary", None),
        ("package", "Package", None)], "No language runtimes.")


def _sockets(out: Output, s: dict[str, Any]) -> None:
    rows = [{**r, "process": ", ".join(f"{o['comm']}[{o['pid']}]" for o in r.get("owners", []))
             or "-"} for r in s.get("listening", [])]
    out.table(rows, "Listening sockets", [
        ("protocol", "Proto", None), ("address", "Address", None), ("port", "Port", None),
        ("uid", "UID", None), ("process", "Process", None)], "Nothing listens.")


def _network(out: Output, s: dict[str, Any]) -> None:
    links = [{**ln, "addrs": ", ".join(f"{a['address']}/{a['prefixlen']}"
                                       for a in ln.get("addresses", [])) or "-"}
             for ln in s.get("links", [])]
    out.table(links, "Links", [
        ("name", "Link", None), ("kind", "Kind", None), ("up", "Up", None),
        ("master", "Master", None), ("parent", "Parent", None), ("vlan_id", "VLAN", None),
        ("addrs", "Addresses", None)], "No links.")
    out.table(s.get("default_gateways", []), "Default gateways", [
        ("family", "Family", None), ("gateway", "Gateway", None), ("device", "Via", None)],
        "No default gateway.")
    dns = s.get("dns", {})
    out.message(f"DNS: {', '.join(dns.get('nameservers', [])) or 'none'}"
                + (f" (search {', '.join(dns['search'])})" if dns.get("search") else ""))


def _containers(out: Output, s: dict[str, Any]) -> None:
    rows = [r for r in s.get("runtimes", []) if r.get("installed") or r.get("running")]
    out.table(rows, "Container runtimes", [
        ("name", "Runtime", None), ("version", "Version", None), ("running", "Running", None),
        ("sockets", "Sockets", None)], "No container runtimes installed.")
    if s.get("host_is_container"):
        out.message(f"This host is itself a container ({s.get('host_container_kind')}).")


def _databases(out: Output, s: dict[str, Any]) -> None:
    rows = [{"engine": srv["engine"], "server_version": srv.get("version", "-"), **i,
             "bind": i.get("bind", [])} for srv in s.get("servers", [])
            for i in (srv.get("instances") or [{}])]
    out.table(rows, "Databases", [
        ("engine", "Engine", None), ("server_version", "Version", None),
        ("name", "Instance", None), ("port", "Port", None), ("bind", "Bind", None),
        ("running", "Running", None), ("data_directory", "Data", None)],
        "No database servers installed.")


def _security(out: Output, s: dict[str, Any]) -> None:
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    findings = sorted(s.get("findings", []), key=lambda f: order.get(f.get("severity"), 9))
    out.table(findings, "Security findings", [
        ("severity", "Severity", None), ("id", "Finding", None), ("title", "What", None),
        ("remediation", "Remedy", None)], "No findings.")
    fw = s.get("firewall", {})
    out.message(f"Firewall: {fw.get('tool') or 'none'}, {fw.get('rule_count', 0)} rules")
    pending = s.get("security_updates", {})
    if pending.get("checked"):
        out.message(f"Pending security updates: {len(pending.get('updates', []))} "
                    "(from apt's lists as last downloaded)")


RENDERERS: dict[str, Callable[[Output, dict[str, Any]], None]] = {
    "os": _os, "virtualization": _virt, "cloud": _cloud, "dmi": _dmi, "cpu": _cpu,
    "memory": _memory, "block": _block, "mounts": _mounts, "nics": _nics, "gpus": _gpus,
    "power": _power, "packages": _packages, "services": _services,
    "applications": _applications, "network": _network, "sockets": _sockets,
    "containers": _containers, "databases": _databases, "security": _security,
}


def render_report(out: Output, report: dict[str, Any]) -> None:
    for name, fn in RENDERERS.items():
        if name in report:
            fn(out, report[name])
    failed = [o for o in report.get("outcomes", []) if o.get("status") != "ok"]
    if failed:
        out.table(failed, "Collectors that did not answer", [
            ("name", "Collector", None), ("status", "Status", None), ("error", "Why", None)],
            "")


@click.command()
@click.argument("what", type=click.Choice([*METHODS, "all"]), default="all")
@pass_ctx
def discover(ctx: Ctx, what: str) -> None:
    """What this machine is: WHAT is hardware, software, network, cloud, containers,
    databases, services, security (needs authorization) or all (default; everything
    but security, in one call). Answers come from the daemon's cache; --json prints one
    object (for all: the daemon's Describe answer as it came)."""
    if what == "all":
        text, report = describe(ctx)
        if ctx.out.as_json:
            ctx.out.json_text(text)
            return
    else:
        report = discover_all(ctx, (what,))
    if ctx.out.as_json:
        ctx.out.json(report)
    else:
        render_report(ctx.out, report)


@click.command()
@click.option("--quick", is_flag=True, help="Only the minimal set (cpu, memory, dmi, "
              "virtualization, os).")
@click.option("--subset", "subsets", multiple=True, metavar="NAME",
              help="Collector or group (hardware, software, networking, all, min, !name); "
                   "repeat for several. Default: all.")
@click.option("--timeout", type=click.FloatRange(0, 600, min_open=True),
              help="Seconds each collector may take at most.")
@click.option("--cloud-metadata", is_flag=True,
              help="Also ask the detected cloud's metadata service (sends HTTP on-link).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the scan to its end and show its report id.")
@pass_ctx
def scan(ctx: Ctx, quick: bool, subsets: tuple[str, ...], timeout: float | None,
         cloud_metadata: bool, wait: bool) -> None:
    """Scan now and store the result as a report (see `osectl report`)."""
    if quick and (subsets or timeout is not None or cloud_metadata):
        raise click.UsageError("--quick takes no --subset, --timeout or --cloud-metadata")
    if quick:
        path = _call(ctx, "ScanQuick")
    else:
        options: dict[str, Any] = {"subsets": list(subsets or ["all"])}
        if timeout is not None:
            options["timeout"] = float(timeout)
        if cloud_metadata:
            options["cloud_metadata"] = True
        path = _call(ctx, "Scan", "a{sv}", options)
    if not wait:
        ctx.out.message(f"scan started: {path}", {"job": path})
        return
    result = follow_job(ctx, path, "scan")
    failed = result.get("failed", [])
    ctx.out.message(f"report {result.get('report')} stored: {len(result.get('collectors', []))} "
                    f"collectors in {float(result.get('duration_ms', 0)):.0f} ms"
                    + (f"; did not answer: {', '.join(failed)}" if failed else ""), result)
    md = result.get("cloud_metadata")
    if md and not ctx.out.as_json:
        ctx.out.record(md, "Cloud metadata service", [
            ("provider", "Provider", None), ("reachable", "Answered", None),
            ("instance_id", "Instance", None), ("instance_type", "Type", None),
            ("region", "Region", None), ("zone", "Zone", None), ("error", "Error", None)])


@click.group()
def report() -> None:
    """Stored scan reports: list, show, diff."""


@report.command("list")
@pass_ctx
def list_reports(ctx: Ctx) -> None:
    """Stored reports, newest first."""
    rows = _call(ctx, "ListReports")
    if not ctx.out.as_json:
        for r in rows:
            failed = r.get("failed", [])
            r["count"] = f"{len(r.get('collectors', []))}" + (
                f" ({', '.join(failed)} failed)" if failed else "")
    ctx.out.table(rows, "Reports", [
        ("id", "Report", None), ("created", "Taken", "time"), ("caller_uid", "Uid", None),
        ("subset", "Subset", None), ("count", "Collectors", None)],
        "No reports yet: run `osectl scan`.")


def _resolve(ctx: Ctx, ref: str) -> str:
    """A report id, or `latest`, `latest~1`, ... counted back from the newest."""
    if not ref.startswith("latest"):
        return ref
    back = ref[len("latest"):]
    if back and not (back.startswith("~") and back[1:].isdigit()):
        raise click.UsageError(f"{ref!r}: use a report id, latest or latest~N")
    n = int(back[1:]) if back else 0
    rows = _call(ctx, "ListReports")
    if n >= len(rows):
        raise click.UsageError(f"there are only {len(rows)} reports")
    return str(rows[n]["id"])


@report.command()
@click.argument("report_id", metavar="ID")
@pass_ctx
def show(ctx: Ctx, report_id: str) -> None:
    """Show report ID (or latest, latest~1, ...)."""
    data = _call(ctx, "GetReport", "s", _resolve(ctx, report_id))
    if ctx.out.as_json:
        ctx.out.json(data)
        return
    ctx.out.message(f"Report {data.get('id')} taken {data.get('started_at')} "
                    f"({float(data.get('duration_ms', 0)):.0f} ms)")
    render_report(ctx.out, data)


@report.command()
@click.argument("old", metavar="A")
@click.argument("new", metavar="B")
@pass_ctx
def diff(ctx: Ctx, old: str, new: str) -> None:
    """What changed from report A to report B (ids, or latest~1 latest)."""
    data = _call(ctx, "DiffReports", "ss", _resolve(ctx, old), _resolve(ctx, new))
    if ctx.out.as_json:
        ctx.out.json(data)
        return
    ctx.out.table(data.get("changes", []), f"{data.get('a')} → {data.get('b')}", [
        ("kind", "Change", None), ("path", "What", None), ("old", "Was", None),
        ("new", "Now", None)], "No changes.")


@click.command()
@click.option("--seconds", type=click.FloatRange(0.1, 300), default=5.0, show_default=True,
              help="How long to sample.")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--top", type=click.IntRange(1, 100), default=10, show_default=True,
              help="How many processes to list.")
@pass_ctx
def profile(ctx: Ctx, seconds: float, interval: float, top: int) -> None:
    """Sample CPU, memory, disks, network and pressure for a while: what is saturated."""
    if interval > seconds:
        raise click.UsageError("--interval must not be longer than --seconds")
    path = _call(ctx, "Profile", "a{sv}", {"seconds": float(seconds),
                                          "interval": float(interval), "top": int(top)})
    result = follow_job(ctx, path, f"profile ({seconds:g} s)")
    if ctx.out.as_json:
        ctx.out.json(result)
        return
    out = ctx.out
    cpu, mem = result.get("cpu", {}), result.get("memory", {})
    out.record({**cpu, **mem, "saturated": result.get("saturated") or ["nothing"],
                "psi": ", ".join(f"{k} {v:g}" for k, v in result.get("pressure", {}).items())
                or "-"}, f"Over {result.get('duration_s', seconds):g} s", [
        ("busy_pct_avg", "CPU busy % (avg)", None), ("busy_pct_max", "CPU busy % (max)", None),
        ("iowait_pct", "I/O wait %", None), ("steal_pct", "Steal %", None),
        ("used_pct_max", "Memory used % (max)", None), ("psi", "Pressure (avg10)", None),
        ("saturated", "Saturated", None)])
    disks = [d for d in result.get("disks", []) if d.get("read_bytes_per_s")
             or d.get("write_bytes_per_s") or d.get("util_pct")]
    out.table(disks, "Busy disks", [
        ("name", "Disk", None), ("read_bytes_per_s", "Read B/s", None),
        ("write_bytes_per_s", "Write B/s", None), ("util_pct", "Util %", None)],
        "No disk activity.")
    out.table(result.get("top_processes", []), "Top processes", [
        ("pid", "PID", None), ("comm", "Command", None), ("cpu_pct", "CPU %", None),
        ("rss_bytes", "RSS", "bytes")], "No processes.")
