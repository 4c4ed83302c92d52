"""org.ose.Test1: a demo job for the test suite only.

Exported only when the daemon runs with the hidden `--test-interface` flag, which the
systemd unit never passes. The real operations come with the services.
"""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.


from typing import Any

from dbus_fast.service import ServiceInterface, method

from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import DemoJobOptions
from oseprovd.bus.names import ROOT_PATH, job_path
from oseprovd.errors import OseError
from oseprovd.jobs import JobContext, JobManager

IFACE_TEST = "org.ose.Test1"
TEST_PATH = f"{ROOT_PATH}/Test"


class TestInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, jobs: JobManager) -> None:
        super().__init__(IFACE_TEST)
        self.ctx = ctx
        self._jobs = jobs

    @method()
    @exported(public=True, expensive=True)
    async def StartDemoJob(self, options: "a{sv}") -> "o":
        req: DemoJobOptions = DemoJobOptions.from_dbus(options)
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            for i in range(req.steps):
                job.step("demo-step", index=i)
                job.progress(i / req.steps, f"step {i + 1} of {req.steps}")
                if await job.wait_cancelled(req.seconds / req.steps):
                    job.check_cancelled()
            if req.fail:
                raise OseError("the demo job was asked to fail")
            return {"steps": req.steps}

        job = self._jobs.start("demo", who.uid, run, "system" if req.exclusive else None)
        return job_path(job.id)
