"""Metadata probe against a fake metadata server on 169.254.169.254 inside a private
network namespace (so nothing leaves the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd import errors
from oseprovd.discovery.metadata import MetadataResult, probe_metadata
from tests.harness.components import require_root
from tests.unit.discovery.helpers import require_tool

WORKTREE = Path(__file__).resolve().parents[3]

# Runs inside the namespace: a fake IMDS (AWS IMDSv2 semantics, GCP's header rule, and a
# path that never answers), then the probe, printing one JSON result per line.
SCRIPT = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from oseprovd.discovery.metadata import probe_metadata

TOKEN = "tok-123"
AWS = {"/latest/meta-data/instance-id": "i-0abc", "/latest/meta-data/instance-type": "m5.large",
       "/latest/meta-data/placement/availability-zone": "eu-west-1b"}
GCP = {"/computeMetadata/v1/instance/id": "4242",
       "/computeMetadata/v1/instance/zone": "projects/1/zones/europe-west4-a",
       "/computeMetadata/v1/instance/machine-type": "projects/1/machineTypes/e2-small"}

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body=""):
        data = body.encode()
        self.send_response(code); self.send_header("Content-Length", str(len(data)))
        self.end_headers(); self.wfile.write(data)
    def do_PUT(self):
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if self.path == "/latest/api/token" and ttl:
            return self.reply(200, TOKEN)
        self.reply(403)
    def do_GET(self):
        if self.path.startswith("/hang"):
            time.sleep(30)
        if self.path in AWS:
            ok = self.headers.get("X-aws-ec2-metadata-token") == TOKEN
            return self.reply(200, AWS[self.path]) if ok else self.reply(401)
        if self.path in GCP:
            ok = self.headers.get("Metadata-Flavor") == "Google"
            return self.reply(200, GCP[self.path]) if ok else self.reply(403)
        self.reply(404)

server = ThreadingHTTPServer(("169.254.169.254", 80), H)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
for provider, base in (("aws", None), ("gcp", None), ("azure", None),
                       ("digitalocean", "http://169.254.169.254/hang")):
    t0 = time.monotonic()
    r = probe_metadata(provider, timeout=0.5, base=base)
    print(json.dumps({"result": r.model_dump(), "seconds": time.monotonic() - t0}), flush=True)
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("ip")
    require_root("creating a network namespace")
    name = f"ose-imds-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        for args in (["link", "set", "lo", "up"],
                     ["addr", "add", "169.254.169.254/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True,
                           timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True,
                       timeout=30)


def test_probe_against_fake_metadata_service(netns: str) -> None:
    t0 = time.monotonic()
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT],
                         cwd=WORKTREE, capture_output=True, text=True, timeout=60, check=True)
    assert time.monotonic() - t0 < 30  # the hanging endpoint did not hold us
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    results = {r["result"]["provider"]: MetadataResult(**r["result"]) for r in rows}
    aws = results["aws"]
    assert (aws.reachable, aws.instance_id, aws.instance_type, aws.zone, aws.region) == (
        True, "i-0abc", "m5.large", "eu-west-1b", "eu-west-1")
    gcp = results["gcp"]
    assert (gcp.instance_id, gcp.zone, gcp.region, gcp.instance_type) == (
        "4242", "europe-west4-a", "europe-west4", "e2-small")
    assert not results["azure"].reachable and "404" in (results["azure"].error or "")
    hang = next(r for r in rows if r["result"]["provider"] == "digitalocean")
    assert not hang["result"]["reachable"] and hang["seconds"] < 3


def test_unreachable_network_is_a_result(netns: str) -> None:
    script = ("import json; from oseprovd.discovery.metadata import probe_metadata as p; "
              "print(p('openstack', timeout=0.5, base='http://169.254.1.1').model_dump_json())")
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script],
                         cwd=WORKTREE, capture_output=True, text=True, timeout=60, check=True)
    result = MetadataResult.model_validate_json(out.stdout)
    assert not result.reachable and result.error


def test_arguments_are_checked() -> None:
    with pytest.raises(errors.InvalidArguments):
        probe_metadata("ibm")
    with pytest.raises(errors.InvalidArguments):
        probe_metadata("aws", base="file:///etc/shadow")
    with pytest.raises(errors.InvalidArguments):
        probe_metadata("aws", timeout=60)
