"""The Kubernetes training example (docker/k8s-training), validated offline and wired to the serving volume."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from training.__main__ import build_config, parse_args

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "docker" / "k8s-training"
K8S_VERSION = "1.30.0"


def _documents() -> dict[str, dict]:
    return {doc["kind"]: doc for path in sorted(TRAINING.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text())}  # fmt: skip


@pytest.mark.parametrize("kind", ["Job", "Service", "PersistentVolumeClaim"])
def test_manifests_are_valid(kind: str) -> None:
    kubernetes_validate.validate(_documents()[kind], K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((TRAINING / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in TRAINING.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_job_runs_torchrun_across_its_pods_and_writes_where_the_service_reads() -> None:
    docs = _documents()
    job, service = docs["Job"], docs["Service"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    launcher = dict(re.fullmatch(r"--([a-z-]+)=(.*)", a).groups() for a in args[: args.index("-m")])
    assert container["command"] == ["torchrun"] and args[args.index("-m") + 1] == "training"
    # One pod per node, all at once, each its completion index as its node rank.
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == int(launcher["nnodes"])
    assert launcher["node-rank"] == "$(NODE_RANK)"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"].endswith(
        "['batch.kubernetes.io/job-completion-index']"
    )
    # The rendezvous is on pod 0, through the headless Service the pods' subdomain names.
    assert launcher["rdzv-backend"] == "c10d"
    host, port = launcher["rdzv-endpoint"].split(":")
    assert (
        host == f"{job['metadata']['name']}-0.{service['metadata']['name']}" and pod["subdomain"] == host.split(".")[1]
    )
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert int(port) == service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]
    # training's own parser accepts the arguments; the bundle lands in the serving model repository.
    train_args = parse_args(args[args.index("training") + 1 :])
    build_config(train_args)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    serving_claim = yaml.safe_load((ROOT / "docker" / "k8s" / "pvc.yaml").read_text())
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == serving_claim["metadata"]["name"]
    assert "ReadWriteMany" in serving_claim["spec"]["accessModes"] and not mounts["models"].get("readOnly")
    out = train_args.out
    assert out.is_relative_to(mounts["models"]["mountPath"]) and re.fullmatch(r"[0-9]+", out.name)
    assert out.relative_to(mounts["models"]["mountPath"]).parts[0] == out.parent.name  # <root>/<name>/<version>
    assert train_args.run_dir.relative_to(mounts["models"]["mountPath"]).parts[0].startswith(".")  # not a model
    assert train_args.data.startswith(mounts["data"]["mountPath"]) and mounts["data"]["readOnly"] is True
    assert mounts["shm"]["mountPath"] == "/dev/shm"


def test_the_training_image_installs_the_train_extra() -> None:
    text = (TRAINING / "Dockerfile").read_text()
    assert "'vaeserve[train]'" in text and "--no-index" in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
