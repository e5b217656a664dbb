# The built-in rules of `policies:`, as a Rego library bundled with mlops and evaluated by
# regorus like the team's own rules. `input` is built by src/policy/mod.rs from the plan:
#   environment      the plan's environment
#   rules            the spec's `policies:` (only the keys it sets)
#   changes[]        every change but deletes: i (its place in the plan), address, kind, verb,
#                    data_destroying, instance_type (the provider's default, if any), body (the
#                    resource as the spec declares it)
#   approvals        model address -> the registry approval the plan gives it (or the spec declares)
# Each violation says its code, the address, the message, the field of the body it is about
# (null: the resource's own line), and its order (i, rank, j) for a stable report.
package mlops.builtin

import rego.v1

rules := input.rules

declared(c) if count(object.get(c.body, "variants", [])) > 0

variants(c) := c.body.variants if declared(c)

variants(c) := [{}] if not declared(c)

# A variant's value and where it is written: `variants.N.KEY`, else the endpoint's `KEY`.
field(c, i, v, k) := [v[k], sprintf("variants.%d.%s", [i, k])] if {
	declared(c)
	object.get(v, k, null) != null
} else := [c.body[k], k] if {
	object.get(c.body, k, null) != null
}

endpoints contains c if {
	some c in input.changes
	c.kind == "endpoints"
}

violation contains v if {
	rules.forbid_data_destroying == true
	some c in input.changes
	c.data_destroying == true
	v := {"i": c.i, "rank": 0, "j": 0, "code": "policy::data_destroying", "address": c.address, "field": null,
		"msg": sprintf("%s would destroy stored data (%s)", [c.address, c.verb])}
}

declared_types(c) := [[t, at] |
	some i, v in variants(c)
	f := field(c, i, v, "instance_type")
	t := f[0]
	is_string(t)
	at := f[1]
]

instance_types(c) := declared_types(c) if {
	count(declared_types(c)) > 0
} else := [[c.instance_type, "instance_type"]] if {
	is_string(c.instance_type)
} else := []

violation contains v if {
	allowed := rules.allowed_instance_types
	some c in endpoints
	some j, p in instance_types(c)
	not p[0] in allowed
	v := {"i": c.i, "rank": 1, "j": j, "code": "policy::instance_type", "address": c.address, "field": p[1],
		"msg": sprintf("%s uses instance type `%s`; allowed: %s", [c.address, p[0], concat(", ", allowed)])}
}

replicas(c, i, v) := [n, f[1]] if {
	f := field(c, i, v, "instance_count")
	n := f[0]
	is_number(n)
} else := [1, f[1]] if {
	f := field(c, i, v, "instance_count")
} else := [1, "instance_count"]

bound(key) := sprintf("%v", [rules.replicas[key]]) if {
	is_number(rules.replicas[key])
} else := ""

violation contains v if {
	rules.replicas
	some c in endpoints
	some i, var in variants(c)
	r := replicas(c, i, var)
	outside(r[0])
	v := {"i": c.i, "rank": 2, "j": i, "code": "policy::replicas", "address": c.address, "field": r[1],
		"msg": sprintf("%s has %v replica(s); allowed: %s..=%s", [c.address, r[0], bound("min"), bound("max")])}
}

outside(n) if n < rules.replicas.min

outside(n) if n > rules.replicas.max

violation contains v if {
	input.environment in rules.require_rollout_for
	some c in endpoints
	object.get(c.body, "rollout", null) == null
	v := {"i": c.i, "rank": 3, "j": 0, "code": "policy::rollout_required", "address": c.address, "field": null,
		"msg": sprintf("%s has no `rollout:`, which environment `%s` requires: a new model would take all the traffic at once, unwatched", [c.address, input.environment])}
}

served(c, i, v) := [m, f[1]] if {
	f := field(c, i, v, "model")
	m := f[0]
	is_string(m)
} else := [null, f[1]] if {
	f := field(c, i, v, "model")
} else := [null, "model"]

violation contains v if {
	rules.require_approved_models == true
	some c in endpoints
	some i, var in variants(c)
	s := served(c, i, var)
	approval := object.get(input.approvals, s[0], null)
	approval != "Approved"
	v := {"i": c.i, "rank": 4, "j": i, "code": "policy::unapproved_model", "address": c.address, "field": s[1],
		"msg": sprintf("%s serves %s, whose registry approval is %s", [c.address, name_or(s[0], "no model"), name_or(approval, "not set")])}
}

name_or(x, d) := x if {
	is_string(x)
} else := d

violation contains v if {
	rules.require_versioned_datasets == true
	some c in input.changes
	c.kind == "datasets"
	object.get(c.body, "source", null) == null
	v := {"i": c.i, "rank": 5, "j": 0, "code": "policy::unversioned_dataset", "address": c.address, "field": null,
		"msg": sprintf("%s is not versioned by content: give it a `source` folder", [c.address])}
}

violation contains v if {
	rules.require_signed_models == true
	some c in input.changes
	c.kind == "models"
	object.get(c.body, "signature", null) == null
	v := {"i": c.i, "rank": 6, "j": 0, "code": "policy::unsigned_model", "address": c.address, "field": null,
		"msg": sprintf("%s is not signed: give it a `signature:` (a model-signing bundle and its key)", [c.address])}
}

violation contains v if {
	required := rules.required_labels
	some c in input.changes
	labels := object.get(c.body, "labels", null)
	missing := [l | some l in required; not has_label(labels, l)]
	count(missing) > 0
	v := {"i": c.i, "rank": 7, "j": 0, "code": "policy::missing_labels", "address": c.address, "field": labels_field(labels),
		"msg": sprintf("%s is missing the required label(s) %s", [c.address, concat(", ", missing)])}
}

has_label(labels, l) if {
	is_object(labels)
	object.get(labels, l, null) != null
}

labels_field(labels) := "labels" if {
	is_object(labels)
} else := null
