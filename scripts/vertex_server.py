"""A Vertex AI (aiplatform v1) test service generated from Google's own API description.

There is no Vertex AI emulator. This one reads the discovery document `aiplatform.v1.json` that
the PyPI package google-api-python-client ships (googleapiclient/discovery_cache/documents/) and
builds everything it serves from it:

- routes: every method of the document (HTTP verb + flat path, e.g. POST
  v1/projects/{projectsId}/locations/{locationsId}/endpoints/{endpointsId}:deployModel);
- request checks: the body against the method's request schema, recursively (a field the schema
  does not have, a wrong JSON type, a value outside an enum: 400 INVALID_ARGUMENT with Google's
  wording), and the query parameters against the method's and the API's parameters;
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
STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED"}
RPC_CODE = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9}


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


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
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_DOUBLE), {json.dumps(value)}")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise ApiError(400, f"Invalid value at '{where}' (TYPE_BOOL), {json.dumps(value)}")

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

    def settle(self):
        """Finishes the operations whose time has come, applying their effect."""
        t = time.monotonic()
        for op in self.ops.values():
            if not op["done"] and t >= op["_at"]:
                try:
                    op["response"] = op.pop("_effect")()
                except ApiError as e:
                    op["error"] = {"code": RPC_CODE.get(STATUS.get(e.code, "FAILED_PRECONDITION"), 9), "message": e.message}
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
        rid = (query.get(f"{collection[:-1]}Id") or [str(next(store.ids))])[0]
        full = f"{name}/{collection}/{rid}"
        if full in store.items:
            raise ApiError(409, f"{full} already exists.")
        resource = dict(body, name=full, createTime=now(), updateTime=now(), etag=f"e{next(store.ids)}")
        if collection == "endpoints":
            resource.setdefault("deployedModels", [])
            resource.setdefault("trafficSplit", {})

        def effect():
            store.items[full] = resource
            return copy.deepcopy(resource)

        # The operation's response is the created resource (the method's request type).
        created = method["request"]["$ref"]
        return store.operation(location_of(full), effect, created, "Create" + collection[:-1].capitalize())
    if verb == "get":
        return copy.deepcopy(model_version(store, name) if collection == "models" else store.get(name))
    if verb == "list":
        parent = name
        prefix = f"{parent}/{collection}/"
        found = [copy.deepcopy(v) for k, v in sorted(store.items.items()) if k.startswith(prefix) and "/" not in k[len(prefix):]]
        key = next(k for k, p in api.schemas[response_ref]["properties"].items() if p.get("type") == "array")
        return {key: found}
    if verb == "patch" and collection == "models":
        return patch_version(store, name, body, query)
    if verb == "patch":
        resource = store.get(name)
        mask = (query.get("updateMask") or [",".join(body)])[0]
        fields = [camel(f) for f in mask.split(",") if f]
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
            return store.operation(location_of(name), effect, method["request"]["$ref"], "Update" + collection[:-1].capitalize())
        return effect()
    if verb == "delete":
        resource = store.get(name)
        if collection == "endpoints" and resource.get("deployedModels"):
            raise ApiError(412, f"Endpoint {name} has deployed models; undeploy them first.")

        def effect():
            # What lives under it goes with it (Vertex refuses that unless `force`; mlops forces).
            for child in [k for k in store.items if k.startswith(name + "/")]:
                if not query.get("force") or query.get("force") == ["false"]:
                    raise ApiError(412, f"{name} still has {child}; delete it first, or set force.")
                store.items.pop(child)
            store.items.pop(name, None)
            return {}

        return store.operation(location_of(name), effect, None, "DeleteResource")
    custom = CUSTOM.get((collection, verb))
    if custom is None:
        raise ApiError(501, f"{'.'.join(trail)}.{verb} is not implemented by this test service")
    return custom(store, name, body)


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
                status = STATUS.get(e.code, "UNKNOWN")
                self.reply(e.code, {"error": {"code": e.code, "message": e.message, "status": status}})

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
