//! What the schema cannot say: references, dependencies and their cycles, providers and their
//! settings, each kind's own checks.

use super::*;

/// Rules the schema cannot express: references, cycles, providers, provider-specific names.
pub(super) fn semantic_check(
    spec: &Spec,
    json: &Value,
    root: &Node,
    base_dir: &Path,
    registry: &Registry,
    diags: &mut Vec<SpecDiagnostic>,
) -> (Vec<Resource>, Providers) {
    let configured: BTreeSet<String> =
        json.get("providers").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let declared: BTreeSet<Address> = Kind::ALL
        .into_iter()
        .flat_map(|k| {
            json.get(k.section())
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(move |m| m.keys().map(move |n| Address::new(k, n.clone())))
        })
        .collect();
    let declared_strings: Vec<String> = declared.iter().map(|a| a.to_string()).collect();

    // Each resource's YAML node, found once (sections can hold thousands of entries).
    let mut nodes: BTreeMap<Address, (Span, &Node)> = BTreeMap::new();
    for kind in Kind::ALL {
        if let Some((_, NodeValue::Map(entries))) = root.get(kind.section()).map(|(k, v)| (k, &v.value)) {
            for (k, v) in entries {
                if let Some(name) = k.as_key() {
                    nodes.entry(Address::new(kind, name)).or_insert((k.span, v));
                }
            }
        }
    }
    let empty = Node { span: Span::default(), value: NodeValue::Null };

    // Resources, with their references.
    let mut resources = Vec::new();
    let mut edges: BTreeMap<Address, Vec<(Address, Span)>> = BTreeMap::new();
    for kind in Kind::ALL {
        let Some(section) = json.get(kind.section()).and_then(Value::as_object) else { continue };
        for (name, body) in section {
            let address = Address::new(kind, name.clone());
            let (name_span, node) = nodes.get(&address).copied().unwrap_or((Span::default(), &empty));
            let mut deps = Vec::new();
            let mut refs: Vec<(Vec<String>, String, Option<Kind>)> = Vec::new();
            let field_ref = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
            match kind {
                Kind::Model => {
                    for (i, r) in body.get("trained_on").and_then(Value::as_array).into_iter().flatten().enumerate() {
                        if let Some(r) = r.as_str() {
                            refs.push((vec!["trained_on".into(), i.to_string()], r.into(), Some(Kind::Dataset)));
                        }
                    }
                }
                Kind::Endpoint => {
                    if let Some(m) = field_ref("model") {
                        refs.push((vec!["model".into()], m, Some(Kind::Model)));
                    }
                    for (i, v) in body.get("variants").and_then(Value::as_array).into_iter().flatten().enumerate() {
                        if let Some(m) = v.get("model").and_then(Value::as_str) {
                            refs.push((
                                vec!["variants".into(), i.to_string(), "model".into()],
                                m.into(),
                                Some(Kind::Model),
                            ));
                        }
                    }
                }
                _ => {}
            }
            for (i, r) in body.get("depends_on").and_then(Value::as_array).into_iter().flatten().enumerate() {
                if let Some(r) = r.as_str() {
                    refs.push((vec!["depends_on".into(), i.to_string()], r.into(), None));
                }
            }
            for (rel, text, want) in refs {
                let span = lookup(node, &rel).map(|(_, v)| v.span).unwrap_or(name_span);
                match text.parse::<Address>() {
                    Err(e) => diags.push(
                        SpecDiagnostic::new("spec::invalid_reference", e.to_string())
                            .label(span, "not a reference")
                            .help("references are written `kind.name`, e.g. `datasets.churn-train`"),
                    ),
                    Ok(target) if want.is_some_and(|w| w != target.kind) => diags.push(
                        SpecDiagnostic::new(
                            "spec::invalid_reference",
                            format!("`{text}` is a {} reference; {} expects {}", target.kind, rel[0], want.unwrap()),
                        )
                        .label(span, format!("expected {}.NAME", want.unwrap()))
                        .help(format!("point it at one of the declared {}", want.unwrap())),
                    ),
                    Ok(target) if !declared.contains(&target) => {
                        let mut d = SpecDiagnostic::new(
                            "spec::unknown_reference",
                            format!("`{text}` is not declared in this spec"),
                        )
                        .label(span, "unknown reference");
                        d = match closest(&text, &declared_strings) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("declare `{}` under `{}:`", target.name, target.kind)),
                        };
                        diags.push(d);
                    }
                    Ok(target) if target == address => diags.push(
                        SpecDiagnostic::new("spec::cycle", format!("`{address}` depends on itself"))
                            .label(span, "self reference")
                            .help("remove the reference"),
                    ),
                    Ok(target) => {
                        if !deps.contains(&target) {
                            deps.push(target.clone());
                        }
                        edges.entry(address.clone()).or_default().push((target, span));
                    }
                }
            }
            resources.push((address, body.clone(), deps, name_span, node));
        }
    }

    // Cycles: report each once, with every edge on it labelled.
    for cycle in find_cycles(&declared, &edges) {
        let names: Vec<String> = cycle.iter().map(|(a, _)| a.to_string()).collect();
        let mut d =
            SpecDiagnostic::new("spec::cycle", format!("dependency cycle: {} → {}", names.join(" → "), names[0]))
                .help("break the cycle by removing one of these references");
        for (a, span) in &cycle {
            d = d.label(*span, format!("{a} depends on the next"));
        }
        diags.push(d);
    }

    // Providers.
    let provider_of = |addr: &Address, body: &Value, models: &BTreeMap<String, String>| -> Result<String, String> {
        if let Some(p) = body.get("provider").and_then(Value::as_str) {
            return Ok(p.to_string());
        }
        if let Some(p) = registry.claimant(addr.kind, body) {
            return Ok(p.into());
        }
        if addr.kind == Kind::Endpoint {
            if let Some(m) = body.get("model").and_then(Value::as_str).and_then(|m| m.parse::<Address>().ok()) {
                if let Some(p) = models.get(&m.name) {
                    return Ok(p.clone());
                }
            }
        }
        if configured.is_empty() || configured.contains("local") {
            return Ok("local".into());
        }
        if configured.len() == 1 {
            return Ok(configured.iter().next().cloned().unwrap_or_default());
        }
        Err(format!(
            "several providers are configured ({}) and `{addr}` names none",
            configured.iter().cloned().collect::<Vec<_>>().join(", ")
        ))
    };
    let mut model_providers = BTreeMap::new();
    let mut out = Vec::new();
    let mut instances = BTreeMap::new();
    for (address, body, deps, name_span, node) in resources {
        let provider = match provider_of(&address, &body, &model_providers) {
            Ok(p) => p,
            Err(msg) => {
                diags.push(
                    SpecDiagnostic::new("spec::ambiguous_provider", msg)
                        .label(name_span, "which provider?")
                        .help("add `provider: NAME` to the resource"),
                );
                continue;
            }
        };
        if address.kind == Kind::Model {
            model_providers.insert(address.name.clone(), provider.clone());
        }
        let provider_span = lookup(node, &["provider".into()]).map(|(_, v)| v.span).unwrap_or(name_span);
        let explicit = !configured.is_empty() || provider != "local";
        if explicit && !configured.contains(&provider) {
            diags.push(
                SpecDiagnostic::new(
                    "spec::provider_not_configured",
                    format!("`{address}` uses provider `{provider}`, which is not configured"),
                )
                .label(provider_span, format!("`{provider}` is not under `providers:`"))
                .help(format!("add a `{provider}:` block under `providers:`")),
            );
            continue;
        }
        let config = ResourceConfig {
            address: address.clone(),
            provider: provider.clone(),
            body: body.clone(),
            dependencies: deps,
            base_dir: base_dir.to_path_buf(),
        };
        if !instances.contains_key(&provider) {
            let block = json.pointer(&format!("/providers/{provider}")).cloned().unwrap_or(Value::Null);
            instances.insert(provider.clone(), registry.instantiate(&provider, &block, base_dir, &spec.project));
        }
        match &instances[&provider] {
            Err(e) => {
                // A block the provider refuses is marked at its value; a missing provider at the
                // resource that asks for it.
                let at = e.path.as_ref().map(|p| {
                    let mut at = vec!["providers".to_string(), provider.clone()];
                    at.extend(p.0.iter().cloned());
                    at
                });
                let d = match at.as_deref().and_then(|at| lookup(root, at)) {
                    Some((_, v)) => {
                        SpecDiagnostic::new("spec::invalid_value", format!("provider `{provider}`: {}", e.message))
                            .label(v.span, "here")
                    }
                    None => SpecDiagnostic::new("spec::provider_unavailable", format!("`{address}`: {}", e.message))
                        .label(provider_span, format!("provider `{provider}`"))
                        .help(format!("available in this build: {}", registry.names().join(", "))),
                };
                if !diags.iter().any(|x| x.message == d.message) {
                    diags.push(d);
                }
            }
            Ok(instance) if instance.resource(address.kind).is_none() => diags.push(
                SpecDiagnostic::new(
                    "spec::kind_not_served",
                    format!("the {provider} provider does not serve {}; `{address}` cannot be on it", address.kind),
                )
                .label(provider_span, format!("provider `{provider}`"))
                .help(format!("put it on a provider that serves {}", address.kind)),
            ),
            Ok(instance) => {
                // A setting another provider owns would be ignored by this one: refused at its line.
                let mut foreign = BTreeSet::new();
                for key in body.as_object().into_iter().flat_map(|m| m.keys()) {
                    let owners = registry.setting_owners(address.kind, key);
                    if !owners.is_empty() && !owners.contains(&provider.as_str()) {
                        let span =
                            lookup(node, std::slice::from_ref(key)).map(|(k, _)| k.map_or(name_span, |k| k.span));
                        diags.push(
                            SpecDiagnostic::new(
                                "spec::unsupported_value",
                                format!(
                                    "`{key}` is a setting of the {} provider; `{address}` is on `{provider}`, which would ignore it",
                                    owners.join(" and ")
                                ),
                            )
                            .label(span.unwrap_or(name_span), "not a setting of this provider")
                            .help(format!("remove it, or put this resource on `{}`", owners[0])),
                        );
                        foreign.insert(key.clone());
                    }
                }
                // An artifact another provider resolves at plan time (`models:/…`): that provider
                // must be configured; the serving provider checks the resolved URI then, not now.
                let reference = config.str("artifact").and_then(|a| {
                    registry.entries().find(|e| e.references.iter().any(|s| a.starts_with(s))).map(|e| e.name)
                });
                if let Some(resolver) = reference.filter(|r| !configured.contains(*r)) {
                    let span = lookup(node, &["artifact".into()]).map(|(_, v)| v.span).unwrap_or(name_span);
                    diags.push(
                        SpecDiagnostic::new(
                            "spec::provider_not_configured",
                            format!(
                                "`{address}`'s artifact is resolved by the {resolver} provider, which is not configured"
                            ),
                        )
                        .label(span, format!("resolved by `{resolver}`"))
                        .help(format!("add a `{resolver}:` block under `providers:`")),
                    );
                }
                if reference.is_some() {
                    foreign.insert("artifact".to_string());
                }
                let kind_checks = instance.resource(address.kind).map(|t| t.check(&config)).unwrap_or_default();
                for cd in instance
                    .check(&config)
                    .into_iter()
                    .chain(kind_checks)
                    .filter(|cd| !cd.path.0.first().is_some_and(|k| foreign.contains(k)))
                {
                    let span = if cd.path.0.is_empty() {
                        name_span
                    } else {
                        lookup(node, &cd.path.0).map(|(_, v)| v.span).unwrap_or(name_span)
                    };
                    // The provider's own code, kept (`spec::…` for the shared ones, `NAME::…` for its own).
                    let mut d = SpecDiagnostic::new(cd.code, cd.message).label(span, "here");
                    if let Some(h) = cd.help {
                        d = d.help(h);
                    }
                    diags.push(d);
                }
            }
        }
        if address.kind == Kind::FeatureStore {
            let features = body.get("features").and_then(Value::as_object);
            for key in ["record_identifier", "event_time"] {
                if let Some(f) = body.get(key).and_then(Value::as_str) {
                    if !features.is_some_and(|m| m.contains_key(f)) {
                        let span = lookup(node, &[key.into()]).map(|(_, v)| v.span).unwrap_or(name_span);
                        diags.push(
                            SpecDiagnostic::new(
                                "spec::feature_not_declared",
                                format!("`{key}` names `{f}`, which is not among the features"),
                            )
                            .label(span, "not a declared feature")
                            .help(format!("add `{f}` under `features:`")),
                        );
                    }
                }
            }
        }
        out.push(Resource { config, name_span });
    }
    let built = instances.into_iter().filter_map(|(name, p)| Some((name, p.ok()?))).collect();
    (out, Providers { environment: registry.environment.clone(), built })
}

/// Elementary cycles, found by DFS; each reported once (rotated to start at its smallest node).
fn find_cycles(
    nodes: &BTreeSet<Address>,
    edges: &BTreeMap<Address, Vec<(Address, Span)>>,
) -> Vec<Vec<(Address, Span)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&Address, Mark> = nodes.iter().map(|n| (n, Mark::New)).collect();
    let mut found: Vec<Vec<(Address, Span)>> = Vec::new();
    let mut seen = BTreeSet::new();
    for start in nodes {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index), and the edge spans along the stack.
        let mut stack: Vec<(&Address, usize)> = vec![(start, 0)];
        let mut via: Vec<Span> = Vec::new();
        mark.insert(start, Mark::Active);
        while let Some((node, i)) = stack.last().cloned() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if i >= out.len() {
                mark.insert(node, Mark::Done);
                stack.pop();
                via.pop();
                continue;
            }
            stack.last_mut().unwrap().1 += 1;
            let (next, span) = &out[i];
            match mark.get(next).copied() {
                Some(Mark::New) => {
                    mark.insert(next, Mark::Active);
                    stack.push((next, 0));
                    via.push(*span);
                }
                Some(Mark::Active) => {
                    let pos = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<(Address, Span)> = Vec::new();
                    for (j, (n, _)) in stack[pos..].iter().enumerate() {
                        let span = if pos + j + 1 < stack.len() { via[pos + j] } else { *span };
                        cycle.push(((*n).clone(), span));
                    }
                    let key: BTreeSet<Address> = cycle.iter().map(|(a, _)| a.clone()).collect();
                    if seen.insert(key) {
                        let min =
                            cycle.iter().enumerate().min_by_key(|(_, (a, _))| a.clone()).map(|(i, _)| i).unwrap_or(0);
                        cycle.rotate_left(min);
                        found.push(cycle);
                    }
                }
                _ => {}
            }
        }
    }
    found
}
