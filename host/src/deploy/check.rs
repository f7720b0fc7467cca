//! `pactown deploy --check`: the output checked without an engine. Every object must be what
//! its engine accepts and agree with what `up` plans: names are DNS labels, each service keeps
//! its planned port, every name a container is told to reach is a service of the deployment at
//! that port, selectors select, Secrets referenced exist, quantities are Kubernetes'
//! quantities; compose `depends_on` and quadlet `Requires=` name services that exist (and that
//! have the health check they wait for).

use super::{Deployment, Target};
use crate::plan::Plan;

/// What is wrong with the deployment's output (nothing: it is valid).
pub fn check(d: &Deployment, plan: &Plan, target: Target, files: &super::Files) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_ports = std::collections::HashMap::new();
    for u in &d.units {
        if !is_dns_label(&u.dns) {
            problems.push(format!("`{}` is not a DNS label", u.dns));
        }
        if let Some(other) = seen_ports.insert(u.port, &u.name) {
            problems.push(format!(
                "`{}` and `{other}` both use port {}",
                u.name, u.port
            ));
        }
        if let Some(Some(planned)) = plan.services.get(&u.name).map(|s| s.port)
            && planned != 0
            && planned != u.port
        {
            problems.push(format!(
                "`{}` listens on {} but `up` plans {planned}",
                u.name, u.port
            ));
        }
        for a in &u.args {
            let Some(rest) = a.strip_prefix("--elsewhere=") else {
                continue;
            };
            let (name, at) = rest.split_once('=').unwrap_or((rest, ""));
            let port = at.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            match d.units.iter().find(|x| x.name == name) {
                Some(x) if Some(x.port) == port => {}
                Some(x) => problems.push(format!(
                    "`{}` is told to reach `{name}` at {at}, but it listens on {}",
                    u.name, x.port
                )),
                None => problems.push(format!(
                    "`{}` is told to reach `{name}`, which is not deployed",
                    u.name
                )),
            }
        }
    }
    match target {
        Target::Kubernetes => problems.extend(check_kubernetes(d)),
        Target::Compose => problems.extend(check_compose(files)),
        Target::Quadlet => problems.extend(check_quadlet(files)),
    }
    problems
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_quantity(q: &str, cpu: bool) -> bool {
    let (num, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    !num.is_empty()
        && if cpu {
            matches!(unit, "" | "m")
        } else {
            matches!(unit, "" | "Ki" | "Mi" | "Gi" | "Ti")
        }
}

fn check_kubernetes(d: &Deployment) -> Vec<String> {
    let objects = super::kubernetes::objects(d);
    let mut problems = Vec::new();
    let of = |kind: &'static str| objects.iter().filter(move |o| o["kind"] == kind);
    let secrets: Vec<&str> = of("Secret")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let pod_labels: Vec<&serde_json::Value> = of("Deployment")
        .map(|o| &o["spec"]["template"]["metadata"]["labels"])
        .collect();
    let matches = |selector: &serde_json::Value| {
        selector.as_object().is_some_and(|sel| {
            pod_labels
                .iter()
                .any(|labels| sel.iter().all(|(k, v)| &labels[k] == v))
        })
    };
    for o in &objects {
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        if o["apiVersion"].as_str().is_none_or(str::is_empty)
            || o["kind"].as_str().is_none_or(str::is_empty)
        {
            problems.push(format!("`{name}` has no apiVersion or kind"));
        }
        if !is_dns_label(name) {
            problems.push(format!("object name `{name}` is not a DNS label"));
        }
        match o["kind"].as_str() {
            Some("Deployment") => {
                let spec = &o["spec"];
                let sel = &spec["selector"]["matchLabels"];
                let labels = &spec["template"]["metadata"]["labels"];
                if !sel
                    .as_object()
                    .is_some_and(|s| s.iter().all(|(k, v)| &labels[k] == v))
                {
                    problems.push(format!(
                        "Deployment `{name}`'s selector does not select its pods"
                    ));
                }
                for c in spec["template"]["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    for (k, cpu) in [("memory", false), ("cpu", true)] {
                        if let Some(q) = c["resources"]["limits"][k].as_str()
                            && !is_quantity(q, cpu)
                        {
                            problems
                                .push(format!("Deployment `{name}`: `{q}` is not a {k} quantity"));
                        }
                    }
                    for e in c["envFrom"].as_array().into_iter().flatten() {
                        if let Some(s) = e["secretRef"]["name"].as_str()
                            && !secrets.contains(&s)
                        {
                            problems.push(format!(
                                "Deployment `{name}` reads Secret `{s}`, which is not there"
                            ));
                        }
                    }
                }
            }
            Some("Service") if !matches(&o["spec"]["selector"]) => {
                problems.push(format!("Service `{name}` selects no Deployment's pods"));
            }
            Some("NetworkPolicy") if !matches(&o["spec"]["podSelector"]["matchLabels"]) => {
                problems.push(format!(
                    "NetworkPolicy `{name}` selects no Deployment's pods"
                ));
            }
            _ => {}
        }
    }
    for u in &d.units {
        if !of("Service").any(|o| o["metadata"]["name"] == u.dns.as_str()) {
            problems.push(format!(
                "`{}` has no Service: it cannot be reached by name",
                u.name
            ));
        }
    }
    problems
}

fn text<'a>(files: &'a super::Files, name: &str) -> Option<&'a str> {
    files
        .iter()
        .find(|(p, _)| p.to_string_lossy() == name)
        .map(|(_, t)| t.as_str())
}

fn check_compose(files: &super::Files) -> Vec<String> {
    let Some(yaml) = text(files, "compose.yaml") else {
        return vec!["no compose.yaml".into()];
    };
    let v: serde_json::Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(e) => return vec![format!("compose.yaml is not YAML: {e}")],
    };
    let services = v["services"].as_object().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for (name, s) in &services {
        for key in s.as_object().into_iter().flat_map(|o| o.keys()) {
            if !COMPOSE_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "compose service `{name}` has `{key}`, which compose does not know"
                ));
            }
        }
        for (dep, cond) in s["depends_on"].as_object().into_iter().flatten() {
            match services.get(dep) {
                None => problems.push(format!(
                    "`{name}` depends on `{dep}`, which is not a service"
                )),
                Some(t) if cond["condition"] == "service_healthy" && t["healthcheck"].is_null() => {
                    problems.push(format!(
                        "`{name}` waits for `{dep}` to be healthy, and it has no health check"
                    ))
                }
                _ => {}
            }
        }
    }
    problems
}

/// The service keys of the compose specification pactown writes (a subset of it).
const COMPOSE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "read_only",
    "user",
    "cap_drop",
    "security_opt",
    "tmpfs",
    "restart",
    "stop_grace_period",
    "healthcheck",
    "network_mode",
    "ports",
    "depends_on",
    "mem_limit",
    "cpus",
];

fn check_quadlet(files: &super::Files) -> Vec<String> {
    let units: Vec<String> = files
        .iter()
        .filter_map(|(p, _)| {
            let name = p.to_string_lossy();
            name.strip_suffix(".container")
                .map(|n| format!("{n}.service"))
        })
        .collect();
    let mut problems = Vec::new();
    for (p, t) in files {
        for line in t.lines() {
            if let Some(unit) = line.strip_prefix("Requires=")
                && !units.iter().any(|u| u == unit)
            {
                problems.push(format!(
                    "{} requires `{unit}`, which is not generated",
                    p.display()
                ));
            }
            if let Some(net) = line.strip_prefix("Network=")
                && net != "host"
                && !files.iter().any(|(q, _)| q.to_string_lossy() == net)
            {
                problems.push(format!(
                    "{} joins `{net}`, which is not generated",
                    p.display()
                ));
            }
        }
    }
    problems
}
