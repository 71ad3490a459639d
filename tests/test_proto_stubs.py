"""The committed gRPC stubs must be what `make proto` (proto/generate.py) generates from proto/ today."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# proto/tetragon/ (a vendored Tetragon API subset) generates into agent/: see test_tetragon_proto_stubs.py.


def test_stubs_are_up_to_date(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), str(tmp_path)], cwd=REPO, check=True, capture_output=True
    )
    generated = sorted(tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc generated nothing"
    stale = []
    for g in generated:
        committed = REPO / g.relative_to(tmp_path)
        if not committed.exists() or committed.read_bytes() != g.read_bytes():
            stale.append(str(committed.relative_to(REPO)))
    assert not stale, f"stubs out of date, run `make proto`: {stale}"


def test_stubs_keep_the_wire_names():
    """Moving the stubs to wire.v1 must not rename anything on the wire: package, services, methods."""
    from wire.v1 import scoring_pb2, telemetry_pb2

    assert scoring_pb2.DESCRIPTOR.package == telemetry_pb2.DESCRIPTOR.package == "kubeattention.v1"
    assert scoring_pb2.DESCRIPTOR.name == "kubeattention/v1/scoring.proto"
    assert scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name == "kubeattention.v1.ScoringService"
    assert telemetry_pb2.NodeTelemetry.DESCRIPTOR.full_name == "kubeattention.v1.NodeTelemetry"
