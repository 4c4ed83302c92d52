"""The one client of the daemon: a synchronous connection and the calls osectl makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from osectl import wire
from osectl.agent import TtyAgent
from osectl.errors import ACCESS_DENIED, EXIT_NOT_FOUND, CliError, from_dbus, unreachable
from oseprovd.bus.names import (
    BUS_NAME,
    DBUS_BUS_NAME,
    DBUS_IFACE,
    DBUS_PATH,
    DBUS_PROPERTIES_IFACE,
    IFACE_JOB,
    IFACE_MANAGER,
    ROOT_PATH,
    job_path,
)


def _job_properties_of(record: dict[str, Any]) -> dict[str, Any]:
    """A Manager.GetJob record in the shape of the Job1 object's properties."""
    return {
        "Id": record.get("id"), "State": record.get("state"),
        "Progress": record.get("progress", 0.0), "StatusText": record.get("status_text", ""),
        "Operation": record.get("operation", ""), "CallerUid": record.get("caller_uid"),
        "Result": record.get("result", {}),
        "Error": [record.get("error_name", ""), record.get("error_message", "")],
    }


class Client:
    def __init__(self, address: str | None, interactive: bool) -> None:
        self._address = address
        self._interactive = interactive
        self._conn: wire.Connection | None = None
        self._agent = TtyAgent(address)

    def _connection(self) -> wire.Connection:
        if self._conn is None:
            try:
                self._conn = wire.connect(self._address)
            except wire.BusUnreachable as exc:
                raise unreachable(exc.address, exc.reason) from None
        return self._conn

    def keep_terminal(self) -> None:
        """A full-screen UI owns the terminal: no password prompt may write into it."""
        self._agent.disable()

    def close(self) -> None:
        self._agent.stop()
        if self._conn is not None:
            self._conn.close()

    def call(self, path: str, interface: str, member: str, signature: str = "",
             body: list[Any] | tuple[Any, ...] = (), timeout: float | None = None) -> Any:
        try:
            return self._call(path, interface, member, signature, body, timeout)
        except CliError as err:
            # Refused, perhaps only because no agent could ask for a password: with one
            # started for this terminal, once more (see osectl/agent.py).
            if (err.name != ACCESS_DENIED or not self._interactive
                    or not self._agent.start()):
                raise
        return self._call(path, interface, member, signature, body, timeout)

    def _call(self, path: str, interface: str, member: str, signature: str,
              body: list[Any] | tuple[Any, ...], timeout: float | None) -> Any:
        conn = self._connection()
        # Interactive authorization can take as long as a person typing a password.
        wait = timeout if timeout is not None else (300.0 if self._interactive else 30.0)
        try:
            reply = conn.call(BUS_NAME, path, interface, member, signature, body, timeout=wait,
                              allow_interactive_authorization=self._interactive)
        except wire.DBusCallError as exc:
            raise from_dbus(exc.name, exc.message) from None
        except wire.CallTimeout:
            raise from_dbus("org.freedesktop.DBus.Error.NoReply", "") from None
        except wire.BusUnreachable as exc:
            raise unreachable(exc.address, exc.reason) from None
        except wire.WireError as exc:
            raise CliError("org.ose.Client.ProtocolError", f"bad answer from the bus: {exc}"
                           ) from None
        return reply[0] if len(reply) == 1 else reply

    def daemon_pid(self) -> int | None:
        """The process id of the daemon owning our bus name, from the bus itself."""
        try:
            reply = self._connection().call(
                DBUS_BUS_NAME, DBUS_PATH, DBUS_IFACE, "GetConnectionUnixProcessID", "s",
                [BUS_NAME], timeout=5.0)
        except wire.WireError:
            return None
        return int(reply[0]) if reply else None

    # --- Manager1 -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call(ROOT_PATH, IFACE_MANAGER, "GetStatus")
        return result

    def list_jobs(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call(
            ROOT_PATH, IFACE_MANAGER, "ListJobs", "a{sv}", [options])
        return result

    def get_job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.call(ROOT_PATH, IFACE_MANAGER, "GetJob", "t", [job_id])
        return result

    def audit_log(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call(
            ROOT_PATH, IFACE_MANAGER, "GetAuditLog", "a{sv}", [options])
        return result

    # --- Job1 ---------------------------------------------------------------------------

    def cancel_job(self, job_id: int) -> None:
        self.call(job_path(job_id), IFACE_JOB, "Cancel")

    def job_properties(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            job_path(job_id), DBUS_PROPERTIES_IFACE, "GetAll", "s", [IFACE_JOB])
        return result

    def watch_job(self, job_id: int) -> Iterator[dict[str, Any]]:
        """The job's properties now, then after every change, until it has finished.

        Driven by the job's PropertiesChanged and Finished signals, not by polling.
        """
        conn = self._connection()
        path = job_path(job_id)
        try:
            conn.add_match(wire.match_rule(type="signal", sender=BUS_NAME, path=path))
        except wire.WireError as exc:
            raise CliError("org.ose.Client.ProtocolError", f"cannot subscribe: {exc}") from None
        # Subscribed first, then read: a change between the two is not lost.
        try:
            props = self.job_properties(job_id)
        except CliError as err:
            if err.exit_code != EXIT_NOT_FOUND:
                raise
            # Long over: its object has left the bus; the store still has the record.
            yield _job_properties_of(self.get_job(job_id))
            return
        yield dict(props)
        while props.get("State") in ("queued", "running"):
            try:
                msg = conn.next_signal(timeout=None)
            except wire.WireError as exc:
                raise CliError("org.ose.Client.ConnectionLost", f"lost the bus: {exc}") from None
            if msg is None or msg.path != path:
                continue
            if msg.member == "PropertiesChanged" and msg.body and msg.body[0] == IFACE_JOB:
                props.update(msg.body[1])
                yield dict(props)
            elif msg.member == "Finished":
                props = self.job_properties(job_id)
                yield dict(props)
                return
