"""Every bus name, object path, interface, polkit action id and error name, in one place."""

from __future__ import annotations

BUS_NAME = "org.ose.Provisioning1"
ROOT_PATH = "/org/ose/Provisioning1"
JOB_PATH_PREFIX = f"{ROOT_PATH}/Job/"

IFACE_MANAGER = "org.ose.Manager1"
IFACE_JOB = "org.ose.Job1"
IFACE_DISCOVERY = "org.ose.Discovery1"
IFACE_SNAPSHOTS = "org.ose.Snapshots1"
IFACE_RESET = "org.ose.Reset1"
IFACE_REINSTALL = "org.ose.Reinstall1"
IFACE_TUNING = "org.ose.Tuning1"
IFACE_TERMINAL = "org.ose.Terminal1"
IFACE_WORKFLOWS = "org.ose.Workflows1"

# Service interfaces and where they live; the Manager's Features lists those exported.
SERVICE_PATHS = {
    IFACE_DISCOVERY: f"{ROOT_PATH}/Discovery",
    IFACE_SNAPSHOTS: f"{ROOT_PATH}/Snapshots",
    IFACE_RESET: f"{ROOT_PATH}/Reset",
    IFACE_REINSTALL: f"{ROOT_PATH}/Reinstall",
    IFACE_TUNING: f"{ROOT_PATH}/Tuning",
    IFACE_TERMINAL: f"{ROOT_PATH}/Terminal",
    IFACE_WORKFLOWS: f"{ROOT_PATH}/Workflows",
}


def job_path(job_id: int) -> str:
    return f"{JOB_PATH_PREFIX}{job_id}"


class Action:
    """polkit action ids. Reads that are public carry no action (see bus/guard.py)."""

    JOB_CANCEL_ANY = "org.ose.job.cancel-any"
    AUDIT_READ = "org.ose.audit.read"
    TUNING_APPLY = "org.ose.tuning.apply"
    TUNING_REVERT = "org.ose.tuning.revert"
    TUNING_HOLD = "org.ose.tuning.hold"
    TUNING_BENCHMARK = "org.ose.tuning.benchmark"
    SNAPSHOTS_CREATE = "org.ose.snapshots.create"
    SNAPSHOTS_DIFF = "org.ose.snapshots.diff"
    SNAPSHOTS_DELETE = "org.ose.snapshots.delete"
    SNAPSHOTS_UNDO = "org.ose.snapshots.undo"
    SNAPSHOTS_ROLLBACK = "org.ose.snapshots.rollback"
    SNAPSHOTS_BROWSE = "org.ose.snapshots.browse"
    DISCOVERY_AUDIT = "org.ose.discovery.audit"
    DISCOVERY_READ_SENSITIVE = "org.ose.discovery.read-sensitive"
    RESET_BASELINE = "org.ose.reset.baseline"
    RESET_PREVIEW = "org.ose.reset.preview"
    RESET_CLEAN = "org.ose.reset.clean"
    RESET_SYSTEM = "org.ose.reset.system"
    RESET_USERDATA = "org.ose.reset.userdata"
    RESET_ROLLBACK = "org.ose.reset.rollback"


# Actions the shipped policy file must declare (a test compares the two).
SHIPPED_ACTIONS = (
    Action.JOB_CANCEL_ANY, Action.AUDIT_READ, Action.TUNING_APPLY, Action.TUNING_REVERT,
    Action.TUNING_HOLD, Action.TUNING_BENCHMARK, Action.SNAPSHOTS_CREATE,
    Action.SNAPSHOTS_DIFF, Action.SNAPSHOTS_DELETE, Action.SNAPSHOTS_UNDO,
    Action.SNAPSHOTS_ROLLBACK, Action.SNAPSHOTS_BROWSE, Action.DISCOVERY_AUDIT,
    Action.DISCOVERY_READ_SENSITIVE, Action.RESET_BASELINE, Action.RESET_PREVIEW,
    Action.RESET_CLEAN, Action.RESET_SYSTEM, Action.RESET_USERDATA, Action.RESET_ROLLBACK,
)

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"

DBUS_BUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
DBUS_IFACE = "org.freedesktop.DBus"
DBUS_PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"

ERROR_PREFIX = "org.ose.Error."
ERROR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
