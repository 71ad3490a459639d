"""The committed gRPC stubs must be what `make proto` generates from proto/ today."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# proto/tetragon/ (a vendored Tetragon API subset) generates into agent/: see test_tetragon_proto_stubs.py.
PROTOS = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto" / "kubeattention").rglob("*.proto"))


def test_stubs_are_up_to_date(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *PROTOS], cwd=REPO, check=True)
    generated = sorted(tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc generated nothing"
    stale = []
    for g in generated:
        committed = REPO / g.relative_to(tmp_path)
        if not committed.exists() or committed.read_bytes() != g.read_bytes():
            stale.append(str(committed.relative_to(REPO)))
    assert not stale, f"stubs out of date, run `make proto`: {stale}"
