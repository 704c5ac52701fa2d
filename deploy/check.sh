#!/usr/bin/env bash
# Checks the deployment files under deploy/ without deploying anything: no cluster, no
# Docker engine, no network but PyPI (and that only when the virtual environment below
# is missing or of other versions). Exits non-zero, naming each problem, on any.
#
# - deploy/kubernetes/*.yaml: every manifest against the Kubernetes OpenAPI schemas of
#   $KUBE_VERSION (default 1.30, the oldest the base is written for) with
#   kubernetes-validate in strict mode (unknown fields are errors); then what a schema
#   cannot see: selectors that match their pods, the autoscaler's target, the Secrets
#   and ConfigMaps the pods name. Custom resources (CRD_FILES: CloudNativePG's Cluster)
#   have no schema there: they are read as YAML and their names checked. Helm values
#   (*-values.yaml) are not manifests: their documented keys are checked. Every file
#   kustomization.yaml names must exist inside its folder (kustomize refuses files
#   outside it); where kubectl is installed, `kubectl kustomize` must build the base.
# - deploy/compose/compose.yaml: against the Compose specification's JSON schema (the
#   one docker-compose 1.29.2 ships on PyPI, Apache-2.0: taken from its wheel, never
#   vendored here; the file keeps to what that schema knows), then: depends_on names
#   services that exist, named volumes and secrets are declared, bind-mounted files
#   exist (but secrets/, which the operator makes), images carry a pinned tag.
# - deploy/docker/Dockerfile: a small lint (it cannot be built here): known
#   instructions, every FROM with a tag that is not `latest`, COPY --from naming an
#   earlier stage, a final USER that is not root, exec-form ENTRYPOINT and CMD, no ADD
#   of URLs; and its Dockerfile.dockerignore keeping target/ and .git out.
#
# The virtual environment lives in ${CARGO_TARGET_DIR:-target}/deploy-check-venv and is
# remade when the pinned versions below change.
set -euo pipefail
cd "$(dirname "$0")/.."

kube_version=${KUBE_VERSION:-1.30}
kubernetes_validate=1.37.0
jsonschema=4.26.0
pyyaml=6.0.3
compose_wheel=docker-compose==1.29.2
compose_schema_sha256=0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac
target=${CARGO_TARGET_DIR:-$PWD/target}
venv=$target/deploy-check-venv
stamp="kubernetes-validate==$kubernetes_validate jsonschema==$jsonschema PyYAML==$pyyaml $compose_wheel"

# Debian and Ubuntu ship `venv` without ensurepip (package python3-venv).
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "deploy/check: installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  else
    echo "deploy/check: python3 cannot make virtual environments (install python3-venv)" >&2
    exit 1
  fi
fi
if [[ $(cat "$venv/.stamp" 2>/dev/null) != "$stamp" ]]; then
  echo "deploy/check: making $venv ($stamp)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip=("$venv/bin/pip" --quiet --disable-pip-version-check)
  if ! "${pip[@]}" install "kubernetes-validate==$kubernetes_validate" \
    "jsonschema==$jsonschema" "PyYAML==$pyyaml" ||
    ! "${pip[@]}" download --no-deps --only-binary=:all: --dest "$venv/wheels" "$compose_wheel"; then
    echo "deploy/check: could not install the checkers from PyPI (offline?)" >&2
    rm -rf "$venv"
    exit 1
  fi
  # Only the schema is used; the wheel is not installed (its dependencies are old).
  "$venv/bin/python" - "$venv" <<'PY'
import glob, sys, zipfile
venv = sys.argv[1]
(wheel,) = glob.glob(f"{venv}/wheels/docker_compose-*.whl")
with zipfile.ZipFile(wheel) as z, open(f"{venv}/compose_spec.json", "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
PY
  rm -rf "$venv/wheels"
  echo "$stamp" >"$venv/.stamp"
fi
if ! echo "$compose_schema_sha256  $venv/compose_spec.json" | sha256sum --check --status; then
  echo "deploy/check: $venv/compose_spec.json is not the expected schema; delete $venv" >&2
  exit 1
fi

kustomize_out=
if command -v kubectl >/dev/null; then
  kustomize_out=$(mktemp)
  if ! kubectl kustomize deploy/kubernetes >"$kustomize_out" 2>"$kustomize_out.err"; then
    # The Python below reports it with the other problems.
    { echo "__KUSTOMIZE_FAILED__"; cat "$kustomize_out.err"; } >"$kustomize_out"
  fi
  rm -f "$kustomize_out.err"
fi

status=0
"$venv/bin/python" - "$kube_version" "$venv/compose_spec.json" "$kustomize_out" <<'PY' || status=$?
import json
import os
import re
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from kubernetes_validate.version import __version__ as kv_version

kube_version, compose_schema_path, kustomize_out = sys.argv[1:4]
DEPLOY = "deploy"
K8S = f"{DEPLOY}/kubernetes"
CRD_FILES = {"postgres-cnpg.yaml"}  # custom resources: no schema in kubernetes-validate
# Secrets an operator makes, by the kind and name of what makes them.
MADE_BY_OPERATORS = {"Cluster": lambda name: f"{name}-app"}  # CloudNativePG: the owner's
NATS_VALUES_KEYS = {  # what deploy/README.md and the file's comments promise
    "config.cluster.enabled": True,
    "config.cluster.replicas": 3,
    "config.jetstream.enabled": True,
    "config.jetstream.fileStore.enabled": True,
    "config.mqtt.enabled": True,
    "config.mqtt.port": 1883,
    "config.mqtt.merge.stream_replicas": 3,
}

problems = []
passed = 0


def ok(what):
    global passed
    passed += 1
    print(f"  ok    {what}")


def fail(what):
    problems.append(what)
    print(f"  FAIL  {what}")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def get(tree, dotted):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return KeyError
        tree = tree[part]
    return tree


def name_of(doc):
    return f"{doc.get('kind', '?').lower()}/{(doc.get('metadata') or {}).get('name', '?')}"


# ---------------------------------------------------------------- Kubernetes
print(f"kubernetes: {K8S}/*.yaml against the Kubernetes {kube_version} schemas "
      f"(kubernetes-validate {kv_version}, strict)")
objects = {}  # (kind, name) -> (file, doc)
kustomization = {}
for file in sorted(os.listdir(K8S)):
    if not file.endswith(".yaml"):
        continue
    path = f"{K8S}/{file}"
    try:
        docs = load_all(path)
    except yaml.YAMLError as e:
        fail(f"{path}: not YAML: {e}")
        continue
    if file == "kustomization.yaml":
        (k,) = docs
        listed = list(k.get("resources", []))
        for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            listed += [f.split("=", 1)[-1] for f in gen.get("files", [])]
        missing = [f for f in listed if not os.path.isfile(f"{K8S}/{f}")]
        outside = [f for f in listed
                   if not os.path.realpath(f"{K8S}/{f}").startswith(os.path.realpath(K8S) + os.sep)]
        if missing:
            fail(f"{path}: names files that do not exist: {', '.join(missing)}")
        elif outside:
            fail(f"{path}: names files outside {K8S} (kustomize refuses them): {', '.join(outside)}")
        else:
            ok(f"{path}: the {len(listed)} files it names exist inside {K8S}")
        kustomization = k
        continue
    if file.endswith("-values.yaml"):
        (values,) = docs
        wrong = [f"{key} is {get(values, key)!r}, not {want!r}"
                 for key, want in NATS_VALUES_KEYS.items() if get(values, key) != want]
        if file != "nats-values.yaml":
            ok(f"{path}: Helm values, YAML")
        elif wrong:
            fail(f"{path}: " + "; ".join(wrong))
        else:
            ok(f"{path}: Helm values (no schema), the {len(NATS_VALUES_KEYS)} documented keys set")
        continue
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            fail(f"{path}: a document without apiVersion and kind")
            continue
        meta = doc.get("metadata") or {}
        if not meta.get("name"):
            fail(f"{path}: {doc['kind']} without metadata.name")
            continue
        objects[(doc["kind"], meta["name"])] = (file, doc)
        if file in CRD_FILES:
            if doc["kind"] in MADE_BY_OPERATORS or "." in doc["apiVersion"].split("/")[0]:
                ok(f"{path}: {name_of(doc)} ({doc['apiVersion']}: a custom resource, "
                   f"no schema to check it against; YAML and names only)")
            else:
                fail(f"{path}: {name_of(doc)} is a built-in kind: it belongs in another file")
            continue
        try:
            version = kv.validate(doc, kube_version, strict=True)
            ok(f"{path}: {name_of(doc)} ({doc['apiVersion']}, schema {version})")
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            fail(f"{path}: {name_of(doc)}: {where}: {e.message}")
        except kv.SchemaNotFoundError:
            fail(f"{path}: {name_of(doc)}: Kubernetes {kube_version} has no "
                 f"{doc['kind']} in {doc['apiVersion']} (a typo, or a custom resource: "
                 f"those go in their own file, listed in CRD_FILES)")
        except kv.VersionNotSupportedError:
            fail(f"kubernetes-validate has no schemas for Kubernetes {kube_version}")
            break

# What the schemas cannot see: references between the objects.
pods = {}  # workload name -> pod template labels
for (kind, name), (file, doc) in objects.items():
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        spec = doc.get("spec", {})
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        pods[(kind, name)] = labels
        if selector.items() <= labels.items():
            ok(f"{K8S}/{file}: {kind.lower()}/{name}: its selector matches its pods")
        else:
            fail(f"{K8S}/{file}: {kind.lower()}/{name}: selector {selector} does not match "
                 f"the pod labels {labels}")
        secrets, config_maps = set(), set()
        pod = spec.get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    secrets.add(ref["secretKeyRef"]["name"])
                if "configMapKeyRef" in ref:
                    config_maps.add(ref["configMapKeyRef"]["name"])
        for v in pod.get("volumes", []):
            if "secret" in v:
                secrets.add(v["secret"]["secretName"])
            if "configMap" in v:
                config_maps.add(v["configMap"]["name"])
        made = {MADE_BY_OPERATORS[k](n) for (k, n) in objects if k in MADE_BY_OPERATORS}
        generated = {g["name"] for g in kustomization.get("configMapGenerator", [])}
        unknown = sorted(s for s in secrets if ("Secret", s) not in objects and s not in made)
        unknown += sorted(c for c in config_maps
                          if ("ConfigMap", c) not in objects and c not in generated)
        if unknown:
            fail(f"{K8S}/{file}: {kind.lower()}/{name} names Secrets or ConfigMaps defined "
                 f"nowhere here: {', '.join(unknown)}")
        else:
            ok(f"{K8S}/{file}: {kind.lower()}/{name}: the Secrets ({len(secrets)}) and "
               f"ConfigMaps ({len(config_maps)}) it names are defined or generated")
for (kind, name), (file, doc) in objects.items():
    spec = doc.get("spec", {})
    if kind == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef", {})
        if (ref.get("kind"), ref.get("name")) in pods:
            ok(f"{K8S}/{file}: hpa/{name} scales {ref['kind'].lower()}/{ref['name']}")
        else:
            fail(f"{K8S}/{file}: hpa/{name}: no {ref.get('kind')} {ref.get('name')} here")
    if kind in ("Service", "PodDisruptionBudget"):
        selector = spec.get("selector", {})
        selector = selector.get("matchLabels", {}) if kind == "PodDisruptionBudget" else selector
        if any(selector.items() <= labels.items() for labels in pods.values()):
            ok(f"{K8S}/{file}: {kind.lower()}/{name}: its selector matches pods")
        else:
            fail(f"{K8S}/{file}: {kind.lower()}/{name}: selector {selector} matches no pods here")

if kustomize_out:
    with open(kustomize_out) as f:
        built = f.read()
    if built.startswith("__KUSTOMIZE_FAILED__"):
        fail(f"kubectl kustomize {K8S}: {built.split(chr(10), 1)[1].strip()}")
    else:
        ok(f"kubectl kustomize {K8S}: builds ({len([d for d in yaml.safe_load_all(built) if d])} objects)")
else:
    print(f"  skip  kubectl kustomize {K8S}: no kubectl here")

# ---------------------------------------------------------------- Compose
COMPOSE_DIR = f"{DEPLOY}/compose"
compose_path = f"{COMPOSE_DIR}/compose.yaml"
print(f"compose: {compose_path} against the Compose specification's schema "
      f"(from docker-compose 1.29.2)")
with open(compose_schema_path) as f:
    schema = json.load(f)
try:
    (compose,) = load_all(compose_path)
except (yaml.YAMLError, ValueError) as e:
    fail(f"{compose_path}: not one YAML document: {e}")
    compose = None
if compose is not None:
    # The schema says draft 2019-09 (by an older URI than jsonschema's registry knows).
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    for e in errors:
        fail(f"{compose_path}: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
    if not errors:
        ok(f"{compose_path}: valid")
    services = compose.get("services", {})
    volumes = set(compose.get("volumes") or {})
    secrets = set(compose.get("secrets") or {})
    used_volumes = set()
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        unknown = sorted(d for d in deps if d not in services)
        if unknown:
            fail(f"{compose_path}: {name} depends on services that do not exist: {', '.join(unknown)}")
        elif deps:
            ok(f"{compose_path}: {name} depends on {', '.join(deps)}, which exist")
        image = svc.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if image and (not tag or tag == "latest") and "@sha256:" not in image:
            fail(f"{compose_path}: {name}: image {image!r} has no pinned tag")
        for v in svc.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if source.startswith((".", "/")):
                path = os.path.normpath(os.path.join(COMPOSE_DIR, source))
                if not os.path.exists(path) and not source.startswith("./secrets/"):
                    fail(f"{compose_path}: {name} mounts {source}, which does not exist")
            elif source:
                used_volumes.add(source)
                if source not in volumes:
                    fail(f"{compose_path}: {name} uses the volume {source}, not declared under volumes")
        for s in svc.get("secrets", []):
            s = s if isinstance(s, str) else s.get("source")
            if s not in secrets:
                fail(f"{compose_path}: {name} uses the secret {s}, not declared under secrets")
    for v in sorted(volumes - used_volumes):
        fail(f"{compose_path}: the volume {v} is declared but no service uses it")
    if not [p for p in problems if p.startswith(compose_path)]:
        ok(f"{compose_path}: {len(services)} services: images pinned, bind mounts exist, "
           f"named volumes ({len(volumes)}) and secrets ({len(secrets)}) declared and used")

# ---------------------------------------------------------------- Dockerfile
DOCKERFILE = f"{DEPLOY}/docker/Dockerfile"
print(f"dockerfile: {DOCKERFILE} (lint only: it cannot be built here)")
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL"}
with open(DOCKERFILE) as f:
    text = f.read()
lines, current = [], ""
for raw in text.splitlines():
    if not current and (not raw.strip() or raw.lstrip().startswith("#")):
        continue
    if raw.rstrip().endswith("\\"):
        current += raw.rstrip()[:-1] + " "
        continue
    lines.append(current + raw)
    current = ""
stages, user, entry, cmd, before = [], None, None, None, len(problems)
for line in lines:
    word, _, rest = line.strip().partition(" ")
    word, rest = word.upper(), rest.strip()
    if word not in INSTRUCTIONS:
        fail(f"{DOCKERFILE}: unknown instruction {word!r}")
        continue
    if word == "FROM":
        parts = [p for p in rest.split() if not p.startswith("--")]
        image = parts[0]
        ref = image.rsplit("/", 1)[-1]
        if image not in stages and "@sha256:" not in image:
            if ":" not in ref:
                fail(f"{DOCKERFILE}: FROM {image}: no tag (an implicit latest)")
            elif ref.split(":", 1)[1] == "latest":
                fail(f"{DOCKERFILE}: FROM {image}: the latest tag")
        stages.append(parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages)))
        user = None  # USER does not carry into the next stage
    elif not stages:
        if word != "ARG":
            fail(f"{DOCKERFILE}: {word} before the first FROM")
    elif word == "COPY":
        m = re.search(r"--from=(\S+)", rest)
        if m and m.group(1) not in stages[:-1] and ":" not in m.group(1):
            fail(f"{DOCKERFILE}: COPY --from={m.group(1)}: no earlier stage of that name")
    elif word == "ADD" and re.search(r"\b(https?|git)://", rest):
        fail(f"{DOCKERFILE}: ADD of a URL (fetch in a RUN step with a checksum instead)")
    elif word == "USER":
        user = rest.split(":")[0]
    elif word in ("ENTRYPOINT", "CMD"):
        try:
            form = json.loads(rest)
            if not (isinstance(form, list) and all(isinstance(a, str) for a in form)):
                raise ValueError
        except ValueError:
            fail(f"{DOCKERFILE}: {word} not in exec form (a JSON array of strings): "
                 f"a shell would stand between the hub and its SIGTERM")
        if word == "ENTRYPOINT":
            entry = rest
        else:
            cmd = rest
if not stages:
    fail(f"{DOCKERFILE}: no FROM")
if user is None:
    fail(f"{DOCKERFILE}: the final stage sets no USER (it would run as root)")
elif user in ("root", "0"):
    fail(f"{DOCKERFILE}: the final stage runs as root")
if entry is None:
    fail(f"{DOCKERFILE}: no ENTRYPOINT")
if len(problems) == before:
    ok(f"{DOCKERFILE}: {len(stages)} stages, base images tagged (none latest), "
       f"final USER {user}, exec-form ENTRYPOINT {entry} and CMD {cmd}")
ignore_path = f"{DOCKERFILE}.dockerignore"
try:
    with open(ignore_path) as f:
        ignored = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    missing = [p for p in ("target", ".git") if p not in ignored]
    if missing:
        fail(f"{ignore_path}: does not ignore {', '.join(missing)} (a huge build context)")
    else:
        ok(f"{ignore_path}: keeps target/ and .git out of the build context")
except FileNotFoundError:
    fail(f"{ignore_path}: missing (the build context would hold target/ and .git)")

print()
if problems:
    print(f"deploy/check: {len(problems)} problem(s), each marked FAIL above")
    sys.exit(1)
print(f"deploy/check: all {passed} checks passed")
PY
[[ -n $kustomize_out ]] && rm -f "$kustomize_out"
exit "$status"
