"""Strimzi's CustomResourceDefinitions, made from Strimzi's own artifacts on Maven Central.

No Strimzi artifact on Maven Central ships the CRD YAML files, but ``io.strimzi:api`` holds the
annotated model classes and ``io.strimzi:crd-generator`` is the tool Strimzi's build runs over
them to write those files. :func:`fetch` gets both with Maven (``deploy/strimzi/pom.xml``) into a
cache outside the repository and runs the generator for the ``v1`` API of the kinds the
manifests use. The generator is built for Java 21+: a JDK of 21 or newer must be on the machine
(``JAVA_HOME``, or one under ``/usr/lib/jvm``).

    python -m deploy.strimzi_crds    # fetch and generate (once), print the folder
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

STRIMZI_VERSION = "1.2.0"
POM = Path(__file__).resolve().parent / "strimzi" / "pom.xml"
KINDS = {
    "Kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "KafkaNodePool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "KafkaUser": "io.strimzi.api.kafka.model.user.KafkaUser",
}


class CrdError(RuntimeError):
    """The CRDs could not be fetched or generated."""


def cache_dir() -> Path:
    root = os.environ.get("SELFCARE_CACHE") or str(Path.home() / ".cache" / "selfcare-access")
    return Path(root).expanduser() / f"strimzi-{STRIMZI_VERSION}"


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def find_java(minimum: int = 21) -> str | None:
    """A ``java`` of at least ``minimum``: JAVA_HOME's, the one on PATH, or one under /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in candidates:
        if Path(java).is_file() and _java_major(java) >= minimum:
            return java
    return None


def crd_files() -> dict[str, Path]:
    return {kind: cache_dir() / "crds" / f"{kind.lower()}.yaml" for kind in KINDS}


def fetch() -> Path:
    """Fetch the jars and generate the CRDs unless the cache has them; returns the CRD folder."""
    files = crd_files()
    if all(p.is_file() for p in files.values()):
        return cache_dir() / "crds"
    java = find_java()
    if java is None:
        raise CrdError("Strimzi's CRD generator needs Java 21 or newer; none found")
    if shutil.which("mvn") is None:
        raise CrdError("mvn (Maven) is not installed; run deploy/setup.sh")
    cache_dir().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir().name}.partial-", dir=cache_dir().parent))
    try:
        jars = tmp / "jars"
        mvn = subprocess.run(
            ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={jars}"],
            capture_output=True, text=True, check=False)
        if mvn.returncode != 0:
            raise CrdError(f"maven failed (exit {mvn.returncode}): {mvn.stdout[-2000:]}")
        (tmp / "crds").mkdir()
        targets = [f"{cls}={tmp / 'crds' / (kind.lower() + '.yaml')}" for kind, cls in KINDS.items()]
        gen = subprocess.run(
            [java, "-cp", f"{jars}/*", "io.strimzi.crdgenerator.CrdGenerator",
             "--target-kube", "1.16+", "--crd-api-version", "v1", "--api-versions", "v1",
             "--storage-version", "v1", "--yaml", *targets],
            capture_output=True, text=True, check=False)
        if gen.returncode != 0 or not all((tmp / "crds" / p.name).is_file() for p in files.values()):
            raise CrdError(f"CRD generator failed (exit {gen.returncode}): {gen.stderr[-2000:]}")
        shutil.rmtree(jars)
        if cache_dir().exists():
            shutil.rmtree(cache_dir())
        tmp.rename(cache_dir())
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cache_dir() / "crds"


def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` → the CRD's openAPIV3Schema, for every generated CRD."""
    fetch()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, path in crd_files().items():
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


if __name__ == "__main__":
    try:
        print(fetch())
    except CrdError as exc:
        sys.exit(str(exc))
