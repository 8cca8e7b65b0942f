#!/usr/bin/env python3
"""Lints and renders both Helm charts with real Helm (the Helm v4 Go SDK, through the PyPI
package helm-python-sdk), parses what they render as Kubernetes objects and checks the
essentials: one hub replica on its own PVC, probes, non-root read-only containers, the
Service/Ingress shapes, the agent DaemonSet with Lease RBAC, and that every flag the charts
pass exists in the binaries they run.

Usage: check_charts.py --bin-dir DIR   (DIR holds tether-hub, tether-agent and tether-controller)
Prints one line per failed check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHARTS = ROOT / "deploy" / "helm"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def render(chart: str, values_file: pathlib.Path | None, extra: dict | None = None) -> list[dict]:
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    values = values or {}
    if extra:
        values = deep_merge(values, extra)
    c = helm.Chart.load(CHARTS / chart)
    c.validate_schema(values)
    out = c.render(values, name="tether", namespace="tether-system", is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            for field in ("apiVersion", "kind"):
                check(isinstance(doc.get(field), str) and doc[field], f"{path}: object without {field}")
            check(bool((doc.get("metadata") or {}).get("name")), f"{path}: object without metadata.name")
            objects.append(doc)
    return objects


def notes(chart: str, values_file: pathlib.Path) -> str:
    values = yaml.safe_load(values_file.read_text()) or {}
    out = helm.Chart.load(CHARTS / chart).render(values, name="tether", namespace="tether-system", is_install=True)
    return next((text for path, text in out.items() if path.endswith("NOTES.txt")), "")


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, ctx: str) -> dict:
    found = of_kind(objects, kind)
    check(len(found) == 1, f"{ctx}: expected one {kind}, found {len(found)}")
    return found[0] if found else {}


def containers(pod_spec: dict) -> list[dict]:
    return (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])


def check_hardened(pod_spec: dict, ctx: str) -> None:
    psc = pod_spec.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True, f"{ctx}: pod runAsNonRoot is not true")
    check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{ctx}: no RuntimeDefault seccomp profile")
    for c in containers(pod_spec):
        sc = c.get("securityContext") or {}
        name = f"{ctx}: container {c.get('name')}"
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation not disabled")
        check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{name}: capabilities not dropped")


def check_probes(container: dict, ctx: str, ready_path: str) -> None:
    for probe, path in (("readinessProbe", ready_path), ("livenessProbe", "/healthz")):
        p = (container.get(probe) or {}).get("httpGet") or {}
        check(p.get("path") == path, f"{ctx}: {probe} is not GET {path}")
        ports = {pt.get("name"): pt.get("containerPort") for pt in container.get("ports") or []}
        check(p.get("port") in ports, f"{ctx}: {probe} port {p.get('port')!r} is not a container port")


def flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def help_text(binary: pathlib.Path, *sub: str) -> str:
    return subprocess.run([str(binary), *sub, "--help"], capture_output=True, text=True, check=True).stdout


def check_flags_exist(args: list[str], help_out: str, ctx: str) -> None:
    known = set(re.findall(r"(--[a-z0-9-]+)", help_out))
    for f in flags(args):
        check(f in known, f"{ctx}: the chart passes {f}, which the binary does not know")


def hub_chart(bin_dir: pathlib.Path) -> None:
    chart = CHARTS / "tether-hub"
    values_files = sorted((chart / "ci").glob("*.yaml"))
    check(len(values_files) >= 4, "tether-hub: fewer than 4 ci/*.yaml values files")
    serve_help = help_text(bin_dir / "tether-hub", "serve")
    init_help = help_text(bin_dir / "tether-hub", "init")
    for vf in values_files:
        ctx = f"tether-hub {vf.name}"
        lint_clean(chart, vf, ctx)
        objs = render("tether-hub", vf)
        values = yaml.safe_load(vf.read_text()) or {}
        sts = one(objs, "StatefulSet", ctx)
        spec = sts.get("spec", {})
        etcd = ((values.get("store") or {}).get("etcd") or {})
        replicas = values.get("replicas", 1)
        check(spec.get("replicas") == replicas, f"{ctx}: the hub StatefulSet does not have {replicas} replicas")
        check(replicas == 1 or etcd.get("endpoints"), f"{ctx}: several hubs without etcd")
        claims = spec.get("volumeClaimTemplates") or []
        check([c["metadata"]["name"] for c in claims] == ["data"], f"{ctx}: no PVC template 'data'")
        check(bool(claims) and claims[0]["spec"]["accessModes"][0].startswith("ReadWriteOnce"),
              f"{ctx}: the data PVC is not ReadWriteOnce")
        pod = spec.get("template", {}).get("spec", {})
        check_hardened(pod, ctx)
        hub = next((c for c in pod.get("containers", []) if c["name"] == "hub"), {})
        check_probes(hub, f"{ctx}: hub", "/readyz")
        if etcd.get("endpoints"):
            args = hub.get("args", [])
            check("--store=etcd" in args, f"{ctx}: etcd endpoints given but the hub serves the embedded store")
            check(f"--etcd-endpoints={','.join(etcd['endpoints'])}" in args, f"{ctx}: etcd endpoints not passed")
            interval = etcd.get("compactionInterval", "5m")
            check(f"--etcd-compaction-interval={interval}" in args,
                  f"{ctx}: the hub does not compact etcd's history as set")
            check(hub["startupProbe"]["httpGet"]["path"] == "/healthz",
                  f"{ctx}: a hub waiting for etcd or a serving hub would fail a /readyz startup probe and be killed")
            peer = {e["name"]: e for e in hub.get("env", [])}.get("TETHER_PEER_ADDRESS", {})
            check(peer.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
                  f"{ctx}: the hub does not publish its pod IP for the other hubs to relay to")
            check("TETHER_PEER_ADDRESS" in help_text(bin_dir / "tether-hub", "serve"),
                  f"{ctx}: tether-hub serve does not read TETHER_PEER_ADDRESS")
            seed = next((c for c in pod.get("initContainers", []) if c["name"] == "seed-etcd"), {})
            check("--if-empty" in seed.get("args", []), f"{ctx}: the seeding init container would fail on every replica but one")
            check_flags_exist(seed.get("args", [])[1:], help_text(bin_dir / "tether-hub", "migrate"), f"{ctx}: migrate")
            vols_by_name = {v["name"]: v for v in pod.get("volumes", [])}
            check(vols_by_name.get("etcd", {}).get("secret", {}).get("secretName") == etcd.get("clientSecret"),
                  f"{ctx}: the etcd client Secret is not mounted")
        said = notes("tether-hub", vf)
        check("admin-config" in said, f"{ctx}: NOTES.txt does not say how to fetch the admin credential")
        if replicas > 1:
            # Only the replica that seeded etcd has a registered admin credential.
            check("seeded etcd" in said and "one replica" not in said,
                  f"{ctx}: NOTES.txt for several hubs does not say whose admin credential works")
            pdb = one(objs, "PodDisruptionBudget", ctx)
            check(pdb["spec"].get("maxUnavailable") == 1, f"{ctx}: the PodDisruptionBudget lets more than one hub go")
            anti = pod.get("affinity", {}).get("podAntiAffinity")
            check(bool(anti), f"{ctx}: several hubs without anti-affinity could share one node")
        else:
            check(not of_kind(objs, "PodDisruptionBudget"), f"{ctx}: a PodDisruptionBudget for one hub blocks every drain")
        check(any(m["mountPath"] == "/data" and m["name"] == "data" for m in hub.get("volumeMounts", [])),
              f"{ctx}: the hub does not mount its PVC at /data")
        check("--metrics-listen=0.0.0.0:9464" in hub.get("args", []),
              f"{ctx}: metrics do not listen on the pod address (probes would fail)")
        check_flags_exist(hub.get("args", [])[1:], serve_help, f"{ctx}: serve")
        init = next((c for c in pod.get("initContainers", []) if c["name"] == "init"), {})
        check("--if-missing" in init.get("args", []), f"{ctx}: init would fail on a restarted pod")
        for c in (init, hub):
            check("--data-dir=/data/hub" in c.get("args", []),
                  f"{ctx}: {c.get('name')} does not keep its data in a directory of its own on the volume")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            check(env.get("TETHER_DATA_DIR") == "/data/hub",
                  f"{ctx}: {c.get('name')}: TETHER_DATA_DIR (for kubectl exec ... admin-config) is not /data/hub")
        check_flags_exist(init.get("args", [])[1:], init_help, f"{ctx}: init")
        services = of_kind(objs, "Service")
        main = next((s for s in services if s["metadata"]["name"] == "tether-tether-hub"), {})
        want_type = (values.get("service") or {}).get("type", "ClusterIP")
        check(main.get("spec", {}).get("type") == want_type, f"{ctx}: Service type is not {want_type}")
        check([p["port"] for p in main.get("spec", {}).get("ports", [])] == [7443],
              f"{ctx}: the Service does not expose exactly the TLS port")
        sans = [a.split("=", 1)[1] for a in init.get("args", []) if a.startswith("--san=")]
        check("tether-tether-hub.tether-system.svc" in sans, f"{ctx}: the Service DNS name is not a SAN")
        ingress = (values.get("ingress") or {})
        if ingress.get("enabled"):
            ing = one(objs, "Ingress", ctx)
            ann = ing.get("metadata", {}).get("annotations") or {}
            check(ann.get("nginx.ingress.kubernetes.io/ssl-passthrough") == "true", f"{ctx}: Ingress without TLS passthrough")
            check(ing["spec"]["rules"][0]["host"] == ingress["host"], f"{ctx}: Ingress host")
            check("tls" not in ing["spec"], f"{ctx}: a passthrough Ingress must not terminate TLS")
            check(ingress["host"] in sans, f"{ctx}: the Ingress host is not in the hub certificate")
        else:
            check(not of_kind(objs, "Ingress"), f"{ctx}: Ingress rendered while disabled")
        ca_values = values.get("ca") or {}
        ca = ca_values.get("existingSecret") or ("tether-tether-hub-ca" if ca_values.get("cert") else None)
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        secrets = {s["metadata"]["name"]: s for s in of_kind(objs, "Secret")}
        if ca:
            check(vols.get("ca", {}).get("secret", {}).get("secretName") == ca, f"{ctx}: CA Secret not mounted")
            check("--ca-cert=/ca/tls.crt" in init.get("args", []), f"{ctx}: init does not use the CA Secret")
            check("ca" not in [m["name"] for m in hub.get("volumeMounts", [])],
                  f"{ctx}: the CA key is mounted into the serving container (init copies it)")
        else:
            check("ca" not in vols, f"{ctx}: CA volume without a CA Secret")
        if ca_values.get("cert"):
            check(secrets.get(ca, {}).get("stringData", {}).get("tls.key") == ca_values["key"],
                  f"{ctx}: the inline CA is not in Secret {ca}")
        else:
            check(not secrets, f"{ctx}: a Secret rendered without an inline CA")
        monitor = ((values.get("metrics") or {}).get("serviceMonitor") or {}).get("enabled", False)
        check(bool(of_kind(objs, "ServiceMonitor")) == monitor, f"{ctx}: ServiceMonitor rendered = {not monitor}")
        check_controller(objs, values, bin_dir, ctx)
    # The CRD the chart installs is the one the controller's types make (deploy/crds/).
    for crd in ("workloads.tether.dev.yaml", "clustersets.tether.dev.yaml"):
        check((chart / "crds" / crd).read_bytes() == (ROOT / "deploy" / "crds" / crd).read_bytes(),
              f"tether-hub: crds/{crd} differs from deploy/crds/ (tether-controller crd --out-dir)")
    # The schema refuses nonsense before anything renders.
    expect_refused("tether-hub", {"controller": {"enabled": True}}, "the controller without its hub user's Secret")
    expect_refused("tether-hub", {"service": {"type": "Ingress"}}, "service.type=Ingress")
    expect_refused("tether-hub", {"replicas": 3}, "replicas > 1 without etcd")
    expect_refused("tether-hub", {"replicas": 3, "ca": {"existingSecret": "ca"},
                                  "store": {"etcd": {"endpoints": ["https://e:2379"]}}},
                   "etcd without its client Secret")
    expect_refused("tether-hub", {"replicas": 3, "store": {"etcd": {"endpoints": ["https://e:2379"],
                                                                    "clientSecret": "c"}}},
                   "several hubs without a shared CA")
    expect_refused("tether-hub", {"store": {"etcd": {"endpoints": ["etcd:2379"], "clientSecret": "c"}},
                                  "ca": {"existingSecret": "ca"}}, "an etcd endpoint without a scheme")
    expect_refused("tether-hub", {"store": {"etcd": {"endpoints": ["https://e:2379"], "clientSecret": "c",
                                                     "compactionInterval": "often"}},
                                  "ca": {"existingSecret": "ca"}}, "a compaction interval that is no duration")
    expect_refused("tether-hub", {"ingress": {"enabled": True}}, "ingress without host")
    expect_refused("tether-hub", {"ca": {"cert": "-----BEGIN CERTIFICATE-----x"}}, "a CA cert without its key")


def check_controller(objs: list[dict], values: dict, bin_dir: pathlib.Path, ctx: str) -> None:
    controller = values.get("controller") or {}
    deployments = of_kind(objs, "Deployment")
    if not controller.get("enabled"):
        check(not deployments and not of_kind(objs, "ClusterRole"), f"{ctx}: controller objects rendered while disabled")
        return
    ctx = f"{ctx}: controller"
    d = one(objs, "Deployment", ctx)
    spec = d.get("spec", {})
    check(spec.get("replicas") == 1 and spec.get("strategy", {}).get("type") == "Recreate",
          f"{ctx}: not one replica replaced by Recreate (it has no leader election)")
    pod = spec.get("template", {}).get("spec", {})
    check_hardened(pod, ctx)
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    for svc in of_kind(objs, "Service"):
        selector = svc.get("spec", {}).get("selector") or {}
        check(not all(labels.get(k) == v for k, v in selector.items()),
              f"{ctx}: Service {svc['metadata']['name']} selects the controller pod")
    c = (pod.get("containers") or [{}])[0]
    check(c.get("command") == ["tether-controller"], f"{ctx}: command")
    args = c.get("args", [])
    check(args[:1] == ["run"], f"{ctx}: does not run")
    check_flags_exist(args[1:], help_text(bin_dir / "tether-controller", "run"), ctx)
    if controller.get("team"):
        check(f"--team={controller['team']}" in args, f"{ctx}: --team missing")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    check(vols.get("hub-user", {}).get("secret", {}).get("secretName") == controller.get("configSecret"),
          f"{ctx}: the hub user's Secret is not mounted")
    check("--config=/etc/tether/config.yaml" in args, f"{ctx}: --config does not point at the Secret")
    roles = of_kind(objs, "ClusterRole")
    check(len(roles) == 1, f"{ctx}: expected one ClusterRole")
    for rule in (roles[0].get("rules") if roles else []):
        allowed = {"workloads", "workloads/status", "clustersets", "clustersets/status"}
        check(rule.get("apiGroups") == ["tether.dev"] and set(rule.get("resources", [])) <= allowed,
              f"{ctx}: the ClusterRole reaches beyond Workload resources: {rule}")
        check("delete" not in rule.get("verbs", []) and "*" not in rule.get("verbs", []),
              f"{ctx}: the ClusterRole may delete or do anything: {rule}")


def agent_chart(bin_dir: pathlib.Path) -> None:
    chart = CHARTS / "tether-agent"
    values_files = sorted((chart / "ci").glob("*.yaml"))
    check(len(values_files) >= 3, "tether-agent: fewer than 3 ci/*.yaml values files")
    agent_help = help_text(bin_dir / "tether-agent")
    for vf in values_files:
        ctx = f"tether-agent {vf.name}"
        lint_clean(chart, vf, ctx)
        objs = render("tether-agent", vf)
        values = yaml.safe_load(vf.read_text()) or {}
        ds = one(objs, "DaemonSet", ctx)
        pod = ds.get("spec", {}).get("template", {}).get("spec", {})
        check_hardened(pod, ctx)
        agent = (pod.get("containers") or [{}])[0]
        args = agent.get("args", [])
        check("--leader-elect" in args, f"{ctx}: the DaemonSet runs without leader election")
        check("--lease=tether-system/tether-tether-agent" in args, f"{ctx}: Lease not in the release namespace")
        check_flags_exist(args, agent_help, ctx)
        check_probes(agent, ctx, "/readyz")
        env = {e["name"]: e for e in agent.get("env", [])}
        check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
              f"{ctx}: POD_NAME (the Lease identity) does not come from the pod name")
        check(env.get("TETHER_HUB", {}).get("value") == values["hub"]["address"], f"{ctx}: hub address")
        labels = (values.get("cluster") or {}).get("labels") or {}
        want = "--labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        check((want in args) == bool(labels), f"{ctx}: cluster labels not passed as {want}")
        join = values.get("join") or {}
        secret_name = join.get("existingSecret") or "tether-tether-agent-join"
        check(env.get("TETHER_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == secret_name,
              f"{ctx}: token not read from Secret {secret_name}")
        secrets = of_kind(objs, "Secret")
        if join.get("existingSecret"):
            check(not secrets, f"{ctx}: a join Secret rendered although join.existingSecret is set")
        else:
            check(len(secrets) == 1 and secrets[0]["stringData"]["token"] == join["token"], f"{ctx}: join Secret")
        role = one(objs, "Role", ctx)
        lease_rule = [r for r in role.get("rules", []) if "leases" in r.get("resources", [])]
        check(bool(lease_rule) and {"get", "create", "update"} <= set(lease_rule[0]["verbs"])
              and lease_rule[0]["apiGroups"] == ["coordination.k8s.io"], f"{ctx}: no Lease RBAC (get/create/update)")
        check(any("secrets" in r.get("resources", []) for r in role.get("rules", [])), f"{ctx}: no Secret RBAC")
        bindings = of_kind(objs, "ClusterRoleBinding")
        admin = any(b["roleRef"]["name"] == "cluster-admin" for b in bindings)
        want_admin = (values.get("rbac") or {}).get("clusterAdmin", False)
        check(admin == want_admin, f"{ctx}: cluster-admin bound = {admin}, wanted {want_admin}")
        cluster_roles = {r["metadata"]["name"]: r for r in of_kind(objs, "ClusterRole")}
        proxy_role = cluster_roles.pop("tether-tether-agent-proxy", {})
        check_impersonation(proxy_role, ctx)
        for name, cr in cluster_roles.items():
            check(all(r.get("verbs") != ["*"] and r.get("resources") != ["*"] for r in cr.get("rules", [])),
                  f"{ctx}: ClusterRole {name} grants a wildcard")
            check(not any("impersonate" in r.get("verbs", []) for r in cr.get("rules", [])),
                  f"{ctx}: ClusterRole {name} may impersonate (only the proxy role may)")
        check(want_admin or len(cluster_roles) == 1, f"{ctx}: expected the scoped ClusterRole")
        teams = (values.get("proxy") or {}).get("teams") or []
        group_rule = [r for r in proxy_role.get("rules", []) if r.get("resources") == ["groups"]]
        names = group_rule[0].get("resourceNames", []) if group_rule else []
        for team in teams:
            check(f"tether:team:{team['name']}" in names, f"{ctx}: team {team['name']} not impersonable")
            for ns in team["namespaces"]:
                found = [b for b in of_kind(objs, "RoleBinding")
                         if b["metadata"]["name"] == f"tether-team-{team['name']}"
                         and b["metadata"].get("namespace") == ns]
                check(len(found) == 1 and found[0]["roleRef"]["name"] == team["clusterRole"],
                      f"{ctx}: team {team['name']} not bound in namespace {ns}")
        wanted = {"viewer": "view", "operator": "edit", "admin": "admin"}
        wanted.update(((values.get("proxy") or {}).get("bindings") or {}))
        for role, cluster_role in wanted.items():
            found = [b for b in bindings if b["metadata"]["name"] == f"tether-proxy-{role}"]
            if cluster_role:
                check(len(found) == 1 and found[0]["roleRef"]["name"] == cluster_role
                      and found[0]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                                    "name": f"tether:{role}"}],
                      f"{ctx}: hub role {role} not bound to {cluster_role}")
            else:
                check(not found, f"{ctx}: hub role {role} bound although its binding is empty")
        if values.get("controlPlaneOnly"):
            check("node-role.kubernetes.io/control-plane" in (pod.get("nodeSelector") or {}),
                  f"{ctx}: not pinned to control-plane nodes")
            check(any(t.get("key") == "node-role.kubernetes.io/control-plane" for t in pod.get("tolerations") or []),
                  f"{ctx}: no toleration for the control-plane taint")
    expect_refused("tether-agent", {"hub": {"address": "h:1"}, "join": {"token": "x", "caPin": "sha256:00"}},
                   "a malformed token and pin")
    expect_refused("tether-agent", {"join": {"existingSecret": "s"}}, "no hub.address")
    expect_refused("tether-agent", {"hub": {"address": "h:1"}, "join": {"existingSecret": "s"},
                                    "cluster": {"labels": {"bad key": "x"}}}, "a malformed label key")


def check_impersonation(role: dict, ctx: str) -> None:
    """The agent may impersonate the proxy user, the hub role groups and the user extra, by
    name: never system:masters, never service accounts, never any user."""
    rules = role.get("rules", [])
    check(bool(rules), f"{ctx}: no proxy ClusterRole")
    for r in rules:
        check(r.get("verbs") == ["impersonate"], f"{ctx}: proxy role rule {r} grants more than impersonate")
        resources = r.get("resources", [])
        check("serviceaccounts" not in resources, f"{ctx}: the agent may impersonate service accounts")
        if resources in (["users"], ["groups"]):
            names = r.get("resourceNames") or []
            check(bool(names), f"{ctx}: impersonation of {resources[0]} not limited by resourceNames")
            check(all(n.startswith("tether:") for n in names), f"{ctx}: impersonable names {names} outside tether:*")
        else:
            check(resources == ["userextras/tether.dev/user"], f"{ctx}: unexpected impersonation of {resources}")


def lint_clean(chart: pathlib.Path, values_file: pathlib.Path, ctx: str) -> None:
    report = helm.lint(chart, yaml.safe_load(values_file.read_text()) or {}, strict=True)
    check(not report.get("errors"), f"{ctx}: helm lint errors {report.get('errors')}")
    for m in report.get("messages", []):
        # 1 = info ("icon is recommended"); warnings and errors fail.
        check(m.get("severity", 0) < 2, f"{ctx}: helm lint: {m.get('path')}: {m.get('error')}")


def expect_refused(chart: str, values: dict, what: str) -> None:
    try:
        render(chart, None, values)
    except helm.HelmError:
        return
    failures.append(f"{chart}: values with {what} were accepted")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", type=pathlib.Path)
    parser.add_argument("--render", metavar="CHART", help="print CHART's objects as YAML and exit")
    parser.add_argument("--values", type=pathlib.Path, help="values file for --render")
    parser.add_argument("--namespace", default="tether-system", help="release namespace for --render")
    args = parser.parse_args()
    if args.render:
        values = yaml.safe_load(args.values.read_text()) if args.values else {}
        c = helm.Chart.load(CHARTS / args.render)
        c.validate_schema(values or {})
        out = c.render(values or {}, name="tether", namespace=args.namespace, is_install=True)
        for path, text in sorted(out.items()):
            if not path.endswith("NOTES.txt"):
                print(f"---\n# {path}\n{text}")
        return 0
    if not args.bin_dir:
        parser.error("--bin-dir is required")
    print(f"helm SDK {helm.helm_sdk_version()}")
    hub_chart(args.bin_dir)
    agent_chart(args.bin_dir)
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        return 1
    print("both charts lint clean and render what they should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
