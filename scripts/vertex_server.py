"""A Vertex AI (aiplatform v1) test service generated from Google's own API description.

There is no Vertex AI emulator. This one reads the discovery document `aiplatform.v1.json` that
the PyPI package google-api-python-client ships (googleapiclient/discovery_cache/documents/) and
builds everything it serves from it:

- routes: every method of the document (HTTP verb + flat path, e.g. POST
  v1/projects/{projectsId}/locations/{locationsId}/endpoints/{endpointsId}:deployModel);
- request checks: the body against the method's request schema, recursively (a field the schema
  does not have, a wrong JSON type, a value outside an enum: 400 INVALID_ARGUMENT with Google's
  wording), and the query parameters against the method's and the API's parameters (names, types, enums,
  int32 ranges: what googleapiclient checks before sending, checked again for other clients);
- answers: errors as google.rpc.Status JSON (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
  FAILED_PRECONDITION, UNIMPLEMENTED); mutations as long-running operations that finish after
  VERTEX_OPERATION_DELAY seconds (default 1), with the method's response type.

Behaviour is generic by verb (create, get, list, patch, delete) over an in-memory store keyed by
resource name; a few custom verbs carry the semantics mlops relies on (models:upload with
parentModel and versionAliases; endpoints:deployModel, :undeployModel, :mutateDeployedModel with
the traffic split). A deployment asking for a machine type listed in
VERTEX_UNAVAILABLE_MACHINE_TYPES (default a2-megagpu-16g) fails its operation with
RESOURCE_EXHAUSTED, as a stockout does. Anything else the document has answers UNIMPLEMENTED.

Run: python scripts/vertex_server.py --port PORT [--discovery PATH]
"""

import argparse
import copy
import itertools
import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

DELAY = float(os.environ.get("VERTEX_OPERATION_DELAY", "1"))
UNAVAILABLE = {t.strip() for t in os.environ.get("VERTEX_UNAVAILABLE_MACHINE_TYPES", "a2-megagpu-16g").split(",") if t.strip()}
STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED"}
RPC_CODE = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9}


class ApiError(Exception):
    """An error as Google's front end answers it: HTTP `code`, and the canonical `status` (a
    FAILED_PRECONDITION is HTTP 400, as Google sends it)."""

    def __init__(self, code, message, status=None):
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or STATUS.get(code, "UNKNOWN")


def precondition(message):
    return ApiError(400, message, "FAILED_PRECONDITION")


# What Vertex AI requires on create that the discovery schemas do not mark (Google's reference
# pages: "Required."), as (collection, body path) pairs; a path with `|` needs one of them.
REQUIRED = {
    "endpoints": ["displayName"],
    "featureGroups": ["bigQuery.bigQuerySource.inputUri"],
    "features": [],
    "featureOnlineStores": ["bigtable|optimized"],
    "featureViews": ["bigQuerySource|featureRegistrySource"],
}

# Resource ids a client may choose, per collection (Google's reference pages).
ID_FORMATS = {
    "endpoints": r"[a-z][a-z0-9-]{0,62}|[1-9][0-9]{0,9}",
    "models": r"[a-z][a-z0-9_-]{0,62}",
    "featureGroups": r"[a-z_][a-z0-9_]{0,59}",
    "features": r"[a-z_][a-z0-9_]{0,59}",
    "featureOnlineStores": r"[a-z_][a-z0-9_]{0,59}",
    "featureViews": r"[a-z_][a-z0-9_]{0,59}",
}


def singular(collection):
    """`featureGroups` → `FeatureGroup`: the word Google's type names use."""
    word = collection[:-1] if collection.endswith("s") else collection
    return word[:1].upper() + word[1:]


def has_path(body, path):
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    # An empty message is a choice too (`optimized: {}`); an empty string or list is not a value.
    return value not in (None, "", [])


def now():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def discovery_path():
    import googleapiclient

    return os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "aiplatform.v1.json")


class Api:
    """The document, as routes and schemas."""

    def __init__(self, doc):
        self.doc = doc
        self.schemas = doc["schemas"]
        self.common = set(doc.get("parameters", {}))
        self.routes = []
        self._walk(doc.get("resources", {}), [])

    def _walk(self, resources, trail):
        for rname, r in resources.items():
            for mname, m in r.get("methods", {}).items():
                pattern = re.sub(r"\{[^}]+\}", "([^/:]+)", re.escape(m["flatPath"]).replace(r"\{", "{").replace(r"\}", "}"))
                self.routes.append((m["httpMethod"], re.compile(f"^/{pattern}$"), trail + [rname], mname, m))
            self._walk(r.get("resources", {}), trail + [rname])

    def route(self, verb, path):
        for method, rx, trail, name, m in self.routes:
            if method == verb and rx.match(path):
                return trail, name, m
        return None

    # --- request checks ---------------------------------------------------------------------

    def check(self, value, schema, where):
        """Checks `value` against a schema as Google's JSON parser does."""
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        t = schema.get("type")
        if t == "object" or "properties" in schema:
            if not isinstance(value, dict):
                raise ApiError(400, f"Invalid value at '{where}', expected an object, got {json.dumps(value)}")
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for k, v in value.items():
                if props is not None and k in props:
                    self.check(v, props[k], f"{where}.{k}" if where else k)
                elif extra is not None:
                    self.check(v, extra, f"{where}[{k}]")
                elif k != "@type":
                    at = f" at '{where}'" if where else ""
                    raise ApiError(400, f'Invalid JSON payload received. Unknown name "{k}"{at}: Cannot find field.')
        elif t == "array":
            if not isinstance(value, list):
                raise ApiError(400, f"Invalid value at '{where}', expected a list, got {json.dumps(value)}")
            for i, v in enumerate(value):
                self.check(v, schema.get("items", {}), f"{where}[{i}]")
        elif t == "string":
            if schema.get("format") in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
                return
            # Protobuf's JSON mapping takes an enum by its number too (clients asking
            # `$alt=json;enum-encoding=int` send numbers).
            if "enum" in schema and isinstance(value, int) and not isinstance(value, bool):
                if not 0 <= value < len(schema["enum"]):
                    raise ApiError(400, f"Invalid value at '{where}', {value} is not a value of the enum")
                return
            if not isinstance(value, str):
                raise ApiError(400, f"Invalid value at '{where}' ({schema.get('format', 'TYPE_STRING')}), {json.dumps(value)}")
            if "enum" in schema and value not in schema["enum"]:
                raise ApiError(400, f"Invalid value at '{where}', \"{value}\" is not one of {schema['enum']}")
        elif t == "integer":
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value))
            if not ok:
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_INT32), {json.dumps(value)}")
            bits = 32 if schema.get("format", "int32") in ("int32", "uint32") else 64
            if not -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1):
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_INT{bits}), {json.dumps(value)}: out of range")
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_DOUBLE), {json.dumps(value)}")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_BOOL), {json.dumps(value)}")

    def check_parameter(self, name, values, method):
        """Checks a query parameter's values against its declared type and enum, as Google's
        front end binds them (what googleapiclient checks before sending, the service checks
        again for clients that do not: a raw request, another language's client)."""
        p = method.get("parameters", {}).get(name) or self.doc.get("parameters", {}).get(name) or {}
        if p.get("repeated") is not True and len(values) > 1:
            raise ApiError(400, f"Invalid value for '{name}': a single value is expected, got {len(values)}.")
        for v in values:
            t = p.get("type")
            if name == "alt":
                # Google's system parameter takes options after the format: Google's generated
                # REST clients send `$alt=json;enum-encoding=int` (enums as numbers).
                v = v.split(";", 1)[0]
            if "enum" in p and v not in p["enum"]:
                raise ApiError(400, f"Invalid value for '{name}': \"{v}\" is not one of {p['enum']}.")
            if t == "integer":
                bits = 64 if p.get("format") in ("int64", "uint64") else 32
                if not re.fullmatch(r"-?\d+", v) or not -(2 ** (bits - 1)) <= int(v) < 2 ** (bits - 1):
                    raise ApiError(400, f"Invalid value at '{name}' (TYPE_INT{bits}), \"{v}\"")
            elif t == "boolean" and v not in ("true", "false"):
                raise ApiError(400, f"Invalid value at '{name}' (TYPE_BOOL), \"{v}\"")
            elif t == "number":
                try:
                    float(v)
                except ValueError:
                    raise ApiError(400, f"Invalid value at '{name}' (TYPE_DOUBLE), \"{v}\"")

    def updatable(self, ref):
        """The fields of a schema an update mask may name: not output-only, not the identifier."""
        props = self.schemas.get(ref, {}).get("properties", {})
        return {k for k, v in props.items() if k != "name" and not v.get("description", "").startswith("Output only.")}

    def response_type(self, ref):
        return f"type.googleapis.com/google.cloud.aiplatform.v1.{ref.replace('GoogleCloudAiplatformV1', '')}"


class Store:
    """Resources by name, operations, and the per-verb behaviour."""

    def __init__(self, api):
        self.api = api
        self.items = {}
        self.ops = {}
        self.ids = itertools.count(1000)
        self.lock = threading.RLock()
        # Names a create in flight has taken: a second create of one is ALREADY_EXISTS at once.
        self.reserved = set()

    def settle(self):
        """Finishes the operations whose time has come, applying their effect."""
        t = time.monotonic()
        for op in self.ops.values():
            if not op["done"] and t >= op["_at"]:
                try:
                    op["response"] = op.pop("_effect")()
                except ApiError as e:
                    op["error"] = {"code": RPC_CODE.get(e.status, 9), "message": e.message}
                if op.get("response") is not None and "@type" not in op["response"]:
                    op["response"]["@type"] = op.pop("_type")
                op.pop("_type", None)
                op["done"] = True

    def operation(self, parent, effect, response_ref, kind):
        name = f"{parent}/operations/{next(self.ids)}"
        op = {
            "name": name,
            "done": False,
            "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}OperationMetadata",
                         "genericMetadata": {"createTime": now(), "updateTime": now()}},
            "_at": time.monotonic() + DELAY,
            "_effect": effect,
            "_type": self.api.response_type(response_ref) if response_ref else "type.googleapis.com/google.protobuf.Empty",
        }
        self.ops[name] = op
        return self.public(op)

    @staticmethod
    def public(op):
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def get(self, name):
        if name not in self.items:
            raise ApiError(404, f"The resource {name} was not found.")
        return self.items[name]


def location_of(name):
    parts = name.split("/")
    return "/".join(parts[:4])


def handle(store, trail, verb, method, path, query, body):
    """One call: `trail` is the resource path (e.g. [projects, locations, endpoints]), `verb`
    the method's name in the document."""
    api = store.api
    collection = trail[-1]
    name = unquote(path[len("/v1/"):]).split(":")[0]
    store.settle()
    if collection == "operations":
        if verb in ("get", "wait"):
            if name not in store.ops:
                raise ApiError(404, f"Operation {name} not found.")
            if verb == "wait":
                deadline = time.monotonic() + 10
                while not store.ops[name]["done"] and time.monotonic() < deadline:
                    time.sleep(0.05)
                    store.settle()
            return store.public(store.ops[name])
        raise ApiError(501, f"{collection}.{verb} is not implemented by this test service")
    response_ref = method.get("response", {}).get("$ref")

    # A verb on the collection (`.../endpoints`, `.../models:upload`) is called on its parent.
    if name.endswith(f"/{collection}"):
        name = name[: -len(collection) - 1]
    if verb == "create":
        given = query.get(f"{collection[:-1]}Id")
        rid = (given or [str(next(store.ids))])[0]
        if given and collection in ID_FORMATS and not re.fullmatch(ID_FORMATS[collection], rid):
            raise ApiError(400, f"Invalid {collection[:-1]}Id {rid!r}: it must match {ID_FORMATS[collection]}.")
        for need in REQUIRED.get(collection, []):
            if not any(has_path(body, p) for p in need.split("|")):
                raise ApiError(400, f"{singular(collection)}.{need.replace('|', ' or ')} is required.")
        # A child needs its parent (a feature its group, a view its online store).
        if name.count("/") > 3 and name not in store.items:
            raise ApiError(404, f"The parent {name} was not found.")
        full = f"{name}/{collection}/{rid}"
        if full in store.items or full in store.reserved:
            raise ApiError(409, f"{full} already exists.")
        store.reserved.add(full)
        resource = dict(body, name=full, createTime=now(), updateTime=now(), etag=f"e{next(store.ids)}")
        if collection == "endpoints":
            resource.setdefault("deployedModels", [])
            resource.setdefault("trafficSplit", {})

        def effect():
            store.reserved.discard(full)
            store.items[full] = resource
            return copy.deepcopy(resource)

        # The operation's response is the created resource (the method's request type).
        created = method["request"]["$ref"]
        return store.operation(location_of(full), effect, created, "Create" + singular(collection))
    if verb == "get":
        return copy.deepcopy(model_version(store, name) if collection == "models" else store.get(name))
    if verb == "list":
        parent = name
        prefix = f"{parent}/{collection}/"
        found = [copy.deepcopy(v) for k, v in sorted(store.items.items()) if k.startswith(prefix) and "/" not in k[len(prefix):]]
        found = [v for v in found if matches(v, (query.get("filter") or [""])[0])]
        key = next(k for k, p in api.schemas[response_ref]["properties"].items() if p.get("type") == "array")
        return {key: found}
    if verb == "patch" and collection == "models":
        return patch_version(store, name, body, query)
    if verb == "patch":
        resource = store.get(name)
        mask = (query.get("updateMask") or [",".join(body)])[0]
        fields = [camel(f) for f in mask.split(",") if f]
        updatable = api.updatable(method["request"]["$ref"])
        for field in fields:
            if field.split(".")[0] not in updatable:
                raise ApiError(400, f"Field {field} of the {singular(collection)} cannot be updated (update_mask).")
        if collection == "endpoints" and "trafficSplit" in fields:
            check_split(resource, body.get("trafficSplit") or {})
        def effect():
            for field in fields:
                if field in body:
                    resource[field] = body[field]
                else:
                    resource.pop(field, None)
            resource["updateTime"] = now()
            return copy.deepcopy(resource)

        # Some updates are long-running operations (the document says which, by the response).
        if response_ref == "GoogleLongrunningOperation":
            return store.operation(location_of(name), effect, method["request"]["$ref"], "Update" + singular(collection))
        return effect()
    if verb == "delete":
        resource = store.get(name)
        if collection == "endpoints" and resource.get("deployedModels"):
            raise precondition(f"Endpoint {name} has deployed models; undeploy them first.")
        if collection == "models":
            serving = [e for e in store.items.values() if any(d.get("model", "").split("@")[0] == name for d in e.get("deployedModels", []))]
            if serving:
                raise precondition(f"The model {name} is deployed to {serving[0]['name']}; undeploy it first.")

        def effect():
            # What lives under it goes with it (Vertex refuses that unless `force`; mlops forces).
            for child in [k for k in store.items if k.startswith(name + "/")]:
                if not query.get("force") or query.get("force") == ["false"]:
                    raise precondition(f"{name} still has {child}; delete it first, or set force.")
                store.items.pop(child)
            store.items.pop(name, None)
            return {}

        return store.operation(location_of(name), effect, None, "Delete")
    custom = CUSTOM.get((collection, verb))
    if custom is None:
        raise ApiError(501, f"{'.'.join(trail)}.{verb} is not implemented by this test service")
    return custom(store, name, body)


def matches(resource, expression):
    """The `list` filters of AIP-160 mlops and its tests use: `labels.KEY=VALUE`,
    `display_name="X"`, joined by AND."""
    for term in filter(None, (t.strip() for t in re.split(r"\s+AND\s+", expression))):
        m = re.fullmatch(r'([a-zA-Z_.]+)\s*=\s*"?([^"]*)"?', term)
        if not m:
            raise ApiError(400, f"Unsupported filter: {term}")
        field, want = m.groups()
        if field.startswith("labels."):
            got = (resource.get("labels") or {}).get(field[len("labels."):])
        else:
            got = resource.get(camel(field))
        if got != want:
            return False
    return True


def camel(path):
    """A field mask path in the JSON names of the body (`traffic_split` → `trafficSplit`)."""
    head, *rest = path.split("_")
    return head + "".join(r[:1].upper() + r[1:] for r in rest)


def check_split(endpoint, split, new_id=None):
    """A traffic split names deployed models of the endpoint (or `0`, the one being deployed) and
    adds up to 100, as Vertex AI requires."""
    known = {d["id"] for d in endpoint["deployedModels"]} | ({"0"} if new_id else set())
    for k in split:
        if k not in known:
            raise ApiError(400, f"Traffic split names {k}, which is not a deployed model of {endpoint['name']}.")
    total = sum(int(v) for v in split.values())
    if split and total != 100:
        raise ApiError(400, f"The traffic split must add up to 100, not {total}.")


def model_version(store, name):
    """A model, or one version of it: `models/ID@VERSION` or `models/ID@ALIAS`."""
    base, _, want = name.partition("@")
    model = store.get(base)
    versions = model["_versions"]
    if not want:
        want = "default"
    for v in versions:
        if v["versionId"] == want or want in v.get("versionAliases", []):
            return {k: x for k, x in v.items() if not k.startswith("_")}
    raise ApiError(404, f"The model version {name} was not found.")


def stored_version(store, name):
    """The stored (mutable) version a `models/ID[@VERSION|@ALIAS]` name points at."""
    base, _, want = name.partition("@")
    for v in store.get(base)["_versions"]:
        if v["versionId"] == (want or v["versionId"]) and (want or "default" in v.get("versionAliases", [])):
            return v
        if want and want in v.get("versionAliases", []):
            return v
    raise ApiError(404, f"The model version {name} was not found.")


def patch_version(store, name, body, query):
    version = stored_version(store, name)
    mask = (query.get("updateMask") or [",".join(body)])[0]
    mutable = {"displayName", "description", "labels", "versionDescription"}
    for field in filter(None, mask.split(",")):
        if field not in mutable:
            raise ApiError(400, f"Field {field} of the model cannot be updated (update_mask).")
        version[field] = body.get(field)
    version["updateTime"] = now()
    return {k: v for k, v in version.items() if not k.startswith("_")}


def merge_aliases(store, name, body):
    """`models/ID@VERSION:mergeVersionAliases`: `a` adds (moving it from another version), `-a` removes."""
    version = stored_version(store, name)
    siblings = store.get(name.partition("@")[0])["_versions"]
    for alias in body.get("versionAliases", []):
        if alias.startswith("-"):
            if alias[1:] == "default":
                raise ApiError(400, "The default alias cannot be removed; set it on another version.")
            version["versionAliases"] = [a for a in version.get("versionAliases", []) if a != alias[1:]]
            continue
        for v in siblings:
            v["versionAliases"] = [a for a in v.get("versionAliases", []) if a != alias]
        version.setdefault("versionAliases", []).append(alias)
    return {k: v for k, v in version.items() if not k.startswith("_")}


def upload(store, parent, body):
    model = copy.deepcopy(body.get("model", {}))
    if not model.get("displayName"):
        raise ApiError(400, "Model.display_name must be set.")
    parent_model = body.get("parentModel")
    if parent_model:
        base = store.get(parent_model)
        version = str(len(base["_versions"]) + 1)
        full = parent_model
    else:
        full = f"{parent}/models/{body.get('modelId') or next(store.ids)}"
        if full in store.items:
            raise ApiError(409, f"Model {full} already exists.")
        version = "1"

    def effect():
        entry = store.items.setdefault(full, {"name": full, "_versions": []})
        aliases = list(model.get("versionAliases", []))
        # The newest version is the default one (the alias moves to it).
        for v in entry["_versions"]:
            v["versionAliases"] = [a for a in v.get("versionAliases", []) if a != "default" and a not in aliases]
        aliases = ["default"] + [a for a in aliases if a != "default"]
        stored = dict(model, name=full, versionId=version, versionAliases=aliases, createTime=now(),
                      updateTime=now(), versionCreateTime=now(), etag=f"e{next(store.ids)}")
        entry["_versions"].append(stored)
        return {"model": full, "modelVersionId": version}

    return store.operation(location_of(parent), effect, "GoogleCloudAiplatformV1UploadModelResponse", "UploadModel")


def deploy(store, name, body):
    endpoint = store.get(name)
    deployed = copy.deepcopy(body.get("deployedModel") or {})
    if not deployed.get("model"):
        raise ApiError(400, "DeployedModel.model must be set.")
    model_version(store, deployed["model"])
    if not (deployed.get("dedicatedResources") or deployed.get("automaticResources")):
        raise ApiError(400, "DeployedModel needs dedicated_resources or automatic_resources.")
    machine = (deployed.get("dedicatedResources") or {}).get("machineSpec", {}).get("machineType")
    deployed.setdefault("id", str(next(store.ids)))
    deployed["createTime"] = now()
    if body.get("trafficSplit"):
        check_split(endpoint, body["trafficSplit"], new_id=deployed["id"])

    def effect():
        if machine in UNAVAILABLE:
            raise ApiError(429, f"Machine type {machine} is not available in this region (stockout).")
        # Vertex resolves the model to the version deployed.
        deployed["modelVersionId"] = model_version(store, deployed["model"])["versionId"]
        deployed["model"] = deployed["model"].split("@")[0]
        endpoint["deployedModels"].append(deployed)
        split = body.get("trafficSplit")
        if split:
            endpoint["trafficSplit"] = {(deployed["id"] if k == "0" else k): v for k, v in split.items()}
        elif len(endpoint["deployedModels"]) == 1:
            endpoint["trafficSplit"] = {deployed["id"]: 100}
        endpoint["updateTime"] = now()
        return {"deployedModel": copy.deepcopy(deployed)}

    return store.operation(location_of(name), effect, "GoogleCloudAiplatformV1DeployModelResponse", "DeployModel")


def undeploy(store, name, body):
    endpoint = store.get(name)
    did = body.get("deployedModelId")
    if not any(d["id"] == did for d in endpoint["deployedModels"]):
        raise ApiError(404, f"Deployed model {did} not found on {name}.")
    if body.get("trafficSplit"):
        check_split(endpoint, body["trafficSplit"])
        if int(body["trafficSplit"].get(did, 0)):
            raise ApiError(400, f"Deployed model {did} is being undeployed: the traffic split must give it none.")
    split = body.get("trafficSplit") or {k: v for k, v in endpoint["trafficSplit"].items() if k != did}
    if endpoint["trafficSplit"].get(did) and not body.get("trafficSplit") and len(endpoint["deployedModels"]) > 1:
        raise ApiError(400, f"Deployed model {did} still receives traffic: give the new traffic split.")

    def effect():
        endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != did]
        endpoint["trafficSplit"] = {k: v for k, v in split.items() if v}
        endpoint["updateTime"] = now()
        return {}

    return store.operation(location_of(name), effect, "GoogleCloudAiplatformV1UndeployModelResponse", "UndeployModel")


def mutate(store, name, body):
    endpoint = store.get(name)
    want = body.get("deployedModel") or {}
    current = next((d for d in endpoint["deployedModels"] if d["id"] == want.get("id")), None)
    if current is None:
        raise ApiError(404, f"Deployed model {want.get('id')} not found on {name}.")
    mask = [f for f in body.get("updateMask", "").split(",") if f]
    allowed = {"dedicatedResources", "dedicatedResources.minReplicaCount", "dedicatedResources.maxReplicaCount",
               "dedicatedResources.autoscalingMetricSpecs", "disableContainerLogging", "enableAccessLogging"}
    if not mask or any(f not in allowed for f in mask):
        raise ApiError(400, f"update_mask must name only mutable fields of the deployed model ({sorted(allowed)}).")

    def effect():
        for f in mask:
            head, _, leaf = f.partition(".")
            target, key, value = (current.setdefault(head, {}), leaf, (want.get(head) or {}).get(leaf)) if leaf \
                else (current, head, want.get(head))
            # A field the request leaves out is cleared (proto3: absent is its default).
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        endpoint["updateTime"] = now()
        return {"deployedModel": copy.deepcopy(current)}

    return store.operation(
        location_of(name), effect, "GoogleCloudAiplatformV1MutateDeployedModelResponse", "MutateDeployedModel"
    )


CUSTOM = {
    ("models", "upload"): upload,
    ("models", "mergeVersionAliases"): merge_aliases,
    ("endpoints", "deployModel"): deploy,
    ("endpoints", "undeployModel"): undeploy,
    ("endpoints", "mutateDeployedModel"): mutate,
}


def make_handler(api, store):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            print(f"{self.command} {self.path} {fmt % args}", flush=True)

        def reply(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def serve(self):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                if url.path == "/_health":
                    return self.reply(200, {"ok": True})
                path = url.path
                # Vertex AI's service config binds the mixins (operations, locations, IAM) under
                # `/ui/` as well as `/v1/`; the discovery document lists only `/v1/`, the Rust
                # client uses `/ui/` for operations.
                if path.startswith("/ui/"):
                    path = "/v1/" + path[len("/ui/"):]
                found = api.route(self.command, path)
                if found is None:
                    raise ApiError(404, f"The requested URL {url.path} was not found on this server.")
                trail, verb, method = found
                query = parse_qs(url.query)
                # System parameters are also accepted with a `$` (`$alt`, `$fields`), as Google's front ends do.
                allowed = set(method.get("parameters", {})) | api.common | {f"${p}" for p in api.common}
                for k in query:
                    if k not in allowed:
                        raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter.")
                    api.check_parameter(k[1:] if k.startswith("$") and k[1:] in api.common else k, query[k], method)
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError as e:
                    raise ApiError(400, f"Invalid JSON payload received. {e}")
                if "request" in method:
                    api.check(body, method["request"], "")
                elif body:
                    raise ApiError(400, "Invalid JSON payload received. This method takes no request body.")
                with store.lock:
                    out = handle(store, trail, verb, method, path, query, body)
                self.reply(200, out)
            except ApiError as e:
                self.reply(e.code, {"error": {"code": e.code, "message": e.message, "status": e.status}})

        do_GET = do_POST = do_PATCH = do_DELETE = serve

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--discovery")
    args = p.parse_args()
    with open(args.discovery or discovery_path()) as f:
        api = Api(json.load(f))
    store = Store(api)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(api, store))
    print(f"vertex test service on http://{args.host}:{args.port} ({len(api.routes)} methods, revision {api.doc.get('revision')})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
