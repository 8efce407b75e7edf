"""Refresh the console's vendored JavaScript from the npm registry (run by hand; never at run time).

    python scripts/vendor_admin_static.py [VERSION]

Downloads the pinned package with `npm pack`, copies its UMD build into webhooks/admin/static/ and records the
version and sha256 in VENDORED.json, which the console test checks against the file on disk."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "chart.js"
PINNED = "4.5.0"
MEMBER = "package/dist/chart.umd.js"
HERE = Path(__file__).resolve().parents[1] / "webhooks" / "admin" / "static"
TARGET = HERE / "chart.umd.js"
MANIFEST = HERE / "VENDORED.json"


def main(version: str = PINNED) -> None:
    with tempfile.TemporaryDirectory() as work:
        name = subprocess.run(["npm", "pack", f"{PACKAGE}@{version}", "--silent"], cwd=work, check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(Path(work) / name) as archive:
            body = archive.extractfile(MEMBER).read()  # type: ignore[union-attr]
    TARGET.write_bytes(body)
    MANIFEST.write_text(json.dumps({TARGET.name: {"package": PACKAGE, "version": version, "member": MEMBER,
                                                  "sha256": hashlib.sha256(body).hexdigest()}}, indent=2) + "\n")
    print(f"{TARGET.name}: {PACKAGE}@{version} sha256 {hashlib.sha256(body).hexdigest()}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
