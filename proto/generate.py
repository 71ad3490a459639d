"""Generate the Python gRPC stubs of ``proto/kubeattention/v1`` into the ``wire.v1`` package.

protoc names generated modules after the .proto paths (``kubeattention/v1/...``); the stubs
live in ``wire/v1/``, so the generated imports are rewritten from ``kubeattention.v1`` to
``wire.v1`` (only the Python import lines and module names: the protobuf package, the
gRPC service names and the serialized descriptors keep ``kubeattention.v1``).

    python proto/generate.py            # write wire/v1/ in this checkout (what `make proto` runs)
    python proto/generate.py OUT_DIR    # write OUT_DIR/wire/v1/ (the stubs test compares)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
PROTO_PACKAGE = "kubeattention/v1"
PYTHON_PACKAGE = "wire/v1"
_IMPORT = re.compile(r"^from kubeattention\.v1 import ", re.M)
_MODULE_NAME = re.compile(r"'kubeattention\.v1\.(\w+_pb2)'")


def protos() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))


def rewrite(text: str) -> str:
    return _MODULE_NAME.sub(r"'wire.v1.\1'", _IMPORT.sub("from wire.v1 import ", text))


def generate(out_root: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                *protos(),
            ],
            check=True,
        )
        dest = out_root / PYTHON_PACKAGE
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE).glob("*_pb2*.py*")):
            target = dest / src.name
            target.write_text(rewrite(src.read_text()))
            written.append(target)
        return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO
    for path in generate(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
