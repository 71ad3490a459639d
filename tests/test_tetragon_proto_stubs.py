"""The vendored Tetragon API subset: committed stubs are what protoc generates from
proto/tetragon/ today, and the wire numbers are Tetragon's."""

import subprocess
import sys
from pathlib import Path

from agent.tetragon import api_pb2

REPO = Path(__file__).resolve().parent.parent
PROTOS = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto" / "tetragon").glob("*.proto"))


def test_tetragon_stubs_are_up_to_date(tmp_path):
    # Generated into agent/ so that tetragon/api.proto becomes agent/tetragon/api_pb2.py(i).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *PROTOS,
        ],
        cwd=REPO,
        check=True,
    )
    generated = sorted(tmp_path.rglob("*_pb2*.py*"))
    assert PROTOS == ["tetragon/api.proto"] and len(generated) == 2
    stale = []
    for g in generated:
        committed = REPO / "agent" / g.relative_to(tmp_path)
        if not committed.exists() or committed.read_bytes() != g.read_bytes():
            stale.append(str(committed.relative_to(REPO)))
    assert not stale, (
        "stubs out of date, run: python -m grpc_tools.protoc -Iproto --python_out=agent "
        f"--pyi_out=agent tetragon/api.proto  ({stale})"
    )


def test_wire_numbers_are_tetragons():
    def numbers(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert api_pb2.DESCRIPTOR.package == "tetragon"
    assert numbers(api_pb2.GetEventsResponse) == {
        "process_exec": 1,
        "process_exit": 5,
        "rate_limit_info": 40001,
        "node_name": 1000,
        "time": 1001,
        "cluster_name": 1003,
    }
    assert {k: v for k, v in numbers(api_pb2.Process).items() if k in ("exec_id", "pid", "binary", "pod")} == {
        "exec_id": 1,
        "pid": 2,
        "binary": 5,
        "pod": 10,
    }
    assert numbers(api_pb2.Pod) == {"namespace": 1, "name": 2, "container": 4, "pod_labels": 5}
    assert numbers(api_pb2.ProcessExit) == {"process": 1, "parent": 2, "signal": 3, "status": 4}
    assert numbers(api_pb2.GetEventsRequest) == {"allow_list": 1, "deny_list": 2}
    assert numbers(api_pb2.Filter)["event_set"] == 6
    assert (api_pb2.PROCESS_EXEC, api_pb2.PROCESS_EXIT, api_pb2.RATE_LIMIT_INFO) == (1, 5, 40001)
    header = (REPO / "proto" / "tetragon" / "api.proto").read_text()
    assert "subset of Tetragon's gRPC API" in header and "Apache-2.0" in header and "cilium/tetragon" in header
