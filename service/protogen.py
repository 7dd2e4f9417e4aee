"""Generates the Python protobuf and gRPC modules from proto/ (run by `make proto`; checked by a test)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
PACKAGE_DIR = PROTO_ROOT / "latentdex" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpc_tools) on every .proto under proto/latentdex/v1 into `out_root`; return the files."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in (out_root / "latentdex" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def generated_drift() -> list[str]:
    """Names of generated files that differ from (or are missing beside) the checked-in ones."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    current = {p.name: p.read_bytes() for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    return sorted(name for name in fresh.keys() | current.keys() if fresh.get(name) != current.get(name))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (PACKAGE_DIR / path.name).write_bytes(path.read_bytes())
            print(f"wrote {PACKAGE_DIR / path.name}")
    sys.exit(0)


if __name__ == "__main__":
    main()
