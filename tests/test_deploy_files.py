"""The files in deploy/, checked by the tools their users run: systemd-analyze, hadolint,
the Kubernetes schemas (kubernetes-validate, offline), promtool; and lazyreg's own
`config check` for every lazyreg.toml they hold.

The metric names the dashboard and the alerts use are checked against a live /metrics
in tests/e2e/test_deploy.py; the image is built and run there too (when enabled).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lazyreg.config import Settings
from lazyreg.configfile import check_file

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.37.0"  # bundled by kubernetes-validate (pinned in pyproject.toml)
LAZYREG_BIN = Path(sys.executable).parent / "lazyreg"



def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: run `make deps` and `make venv`")
    return path


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------- systemd

def test_systemd_unit_verifies(tmp_path: Path) -> None:
    text = (DEPLOY / "lazyreg.service").read_text()
    # systemd-analyze checks that ExecStart's program exists: point it at this lazyreg.
    unit = tmp_path / "lazyreg.service"
    unit.write_text(text.replace("/usr/local/bin/lazyreg", str(LAZYREG_BIN)))
    proc = _run(_tool("systemd-analyze"), "verify", str(unit))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    for line in ("Type=notify", "User=lazyreg", "StateDirectory=lazyreg",
                 "Restart=on-failure", "RestartPreventExitStatus=78", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ExecStart=/usr/local/bin/lazyreg serve --config /etc/lazyreg/lazyreg.toml"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


# ---------------------------------------------------------------- container image

def test_containerfile_lints_and_keeps_the_rules() -> None:
    path = DEPLOY / "Containerfile"
    proc = _run(_tool("hadolint"), "--failure-threshold", "info", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = path.read_text()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    final = instructions[max(i for i, (op, *_) in enumerate(instructions) if op == "FROM"):]
    ops = {op: rest[0] if rest else "" for op, *rest in final}
    assert ops["USER"].split(":")[0] not in ("", "0", "root")  # non-root
    assert ops["VOLUME"] == '["/var/lib/lazyreg"]'  # its state in one volume
    assert "LAZYREG_DATA_DIR=/var/lib/lazyreg" in ops["ENV"]
    assert "/readyz" in ops["HEALTHCHECK"]
    assert ops["ENTRYPOINT"] == '["lazyreg", "serve"]'
    # Listening on every address is the operator's decision (with auth on), never the image's.
    assert "0.0.0.0" not in " ".join(rest[0] for op, *rest in final
                                     if rest and op in ("ENV", "ENTRYPOINT", "CMD"))


# ---------------------------------------------------------------- Kubernetes

def _documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if doc:
                docs.append((name, doc))
    return docs


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    docs = _documents()
    assert {d["kind"] for _, d in docs} >= {"Deployment", "Service", "ConfigMap", "Secret"}
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}: {exc.message}")


def test_a_bad_manifest_is_refused() -> None:
    """The validation is real: a wrong type fails, offline."""
    [deployment] = [d for _, d in _documents() if d["kind"] == "Deployment"]
    deployment = json.loads(json.dumps(deployment))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_deployment_runs_three_replicas_with_probes_and_secrets() -> None:
    docs = dict((d["kind"], d) for _, d in _documents())
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    [server] = pod["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in server["env"]}
    for name in ("LAZYREG_CLUSTER_SECRET", "LAZYREG_S3_ACCESS_KEY_ID",
                 "LAZYREG_S3_SECRET_ACCESS_KEY", "LAZYREG_DATABASE_URL", "LAZYREG_SECRET_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]
    known = {f"LAZYREG_{k.upper()}" for k in set(Settings.model_fields)}
    assert {n for n in env if n.startswith("LAZYREG_")} <= known
    [init] = pod["initContainers"]
    assert init["command"][:3] == ["lazyreg", "db", "upgrade"]
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_configmap_holds_a_lazyreg_toml_that_checks(tmp_path: Path) -> None:
    [configmap] = [d for _, d in _documents() if d["kind"] == "ConfigMap"]
    values = tomllib.loads(configmap["data"]["lazyreg.toml"])
    unknown = set(values) - set(Settings.model_fields)
    assert not unknown, f"not settings: {sorted(unknown)}"
    checked = tmp_path / "lazyreg.toml"
    checked.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    settings = check_file(checked)
    assert (settings.host, settings.auth) == ("0.0.0.0", "on")  # 0.0.0.0 only with auth on


def test_containerd_hosts_toml_points_at_the_mirror() -> None:
    hosts = tomllib.loads((KUBERNETES / "containerd" / "docker.io" / "hosts.toml").read_text())
    assert hosts["server"] == "https://registry-1.docker.io"
    [(url, host)] = hosts["host"].items()
    assert url.endswith("/v2/hub") and host["override_path"] is True
    assert set(host["capabilities"]) == {"pull", "resolve"}


# ---------------------------------------------------------------- Prometheus and Grafana

def test_alert_rules_pass_promtool() -> None:
    proc = _run(_tool("promtool"), "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"LazyregUpstreamFailing", "LazyregStoreNearlyFull", "LazyregNotReady",
            "LazyregHighErrorRate"} <= names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "lazyreg.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel's query (Grafana's variables given values)."""
    queries = dashboard_queries()
    assert len(queries) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"lazyreg:panel_{n}", "expr": q.replace("$__rate_interval", "5m")
         .replace("$instance", ".*")} for n, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = _run(_tool("promtool"), "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
