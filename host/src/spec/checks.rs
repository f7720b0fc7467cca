//! Checks across services, once every README is read: dependencies exist and satisfy their
//! versions, names do not collide as variables, explicit ports are unique, wasm runtimes have a
//! language that builds to wasm, profiles and users exist.

use std::sync::Arc;

use indexmap::IndexMap;

use super::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use super::model::{Ecosystem, MAX_WASM_MEMORY, PortSpec, Service, env_prefix};

/// Checks across services: dependencies exist and satisfy versions, names do not collide as
/// variables, explicit ports are unique. A registry dependency that was not pulled is
/// reported by [`super::pulled::add_pulled`] (or, for `pull`, is what it fetches).
pub fn check(eco: &Ecosystem, diags: &mut Diagnostics) {
    let src = &eco.source;
    let mut by_var: IndexMap<String, &Service> = IndexMap::new();
    for s in eco.services.values() {
        let var = env_prefix(&s.name);
        if let Some(other) = by_var.get(&var) {
            diags.push(
                Diagnostic::error(
                    "yaml::name-collision",
                    format!(
                        "services `{}` and `{}` both become `{var}_URL` for their dependents",
                        other.name, s.name
                    ),
                    src,
                    s.name_span.clone(),
                )
                .with_secondary(other.name_span.clone(), "the other service")
                .with_help("rename one of them"),
            );
        } else {
            by_var.insert(var, s);
        }
    }
    for s in eco.services.values() {
        for dep in &s.depends_on {
            if dep.name == s.name {
                diags.push(
                    Diagnostic::error(
                        "graph::cycle",
                        format!("dependency cycle: {} → {}", s.name, s.name),
                        src,
                        dep.name_span.clone(),
                    )
                    .with_label("a service cannot depend on itself")
                    .with_help("remove this entry"),
                );
                continue;
            }
            let Some(target) = eco.services.get(&dep.name) else {
                // Not pulled yet: `pulled::add_pulled` said so, at the same line.
                if dep.registry != "local" {
                    continue;
                }
                let mut diag = Diagnostic::error(
                    "yaml::unknown-dependency",
                    format!(
                        "service `{}` depends on `{}`, which is not a service of this ecosystem",
                        s.name, dep.name
                    ),
                    src,
                    dep.name_span.clone(),
                );
                let names = eco.services.keys().map(String::as_str);
                diag = match super::diagnostic::did_you_mean(&dep.name, names) {
                    Some(m) => diag.with_help(format!("did you mean `{m}`?")),
                    None if dep.registry != "local" => {
                        diag.with_help("run `pactown pull` to fetch it from its registry")
                    }
                    None => diag.with_help(format!(
                        "services here: {}",
                        eco.services
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                diags.push(diag);
                continue;
            };
            if let (Some(span), Ok(req)) = (
                &dep.version_span,
                semver::VersionReq::parse(dep.version.trim()),
            ) {
                match target.version.as_deref().map(semver::Version::parse) {
                    Some(Ok(v)) if !req.matches(&v) => diags.push(
                        Diagnostic::error(
                            "yaml::version-mismatch",
                            format!(
                                "`{}` needs `{}` {}, but `{}` is version {v}",
                                s.name, dep.name, dep.version, dep.name
                            ),
                            src,
                            span.clone(),
                        )
                        .with_help("change the requirement or the dependency's `version`"),
                    ),
                    None if dep.version.trim() != "*" => diags.push(
                        Diagnostic::warning(
                            "yaml::version-unknown",
                            format!(
                                "`{}` requires version {} of `{}`, which declares no `version`",
                                s.name, dep.version, dep.name
                            ),
                            src,
                            span.clone(),
                        )
                        .with_help(format!(
                            "add `version:` to service `{}` so the requirement can be checked",
                            dep.name
                        )),
                    ),
                    _ => {}
                }
            }
        }
    }
    for s in eco.services.values() {
        check_runtime(s, src, diags);
        check_reuse(s, src, diags);
        if let Some((name, span)) = &s.profile
            && !eco.profiles.contains_key(name)
        {
            let names = eco.profiles.keys().map(String::as_str);
            let help = match super::diagnostic::did_you_mean(name, names) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!(
                    "profiles: {}",
                    eco.profiles
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            diags.push(
                Diagnostic::error(
                    "yaml::profile",
                    format!("unknown profile `{name}`"),
                    src,
                    span.clone(),
                )
                .with_help(help),
            );
        }
        if let Some(user) = &s.user
            && super::service::resolve_user(user).is_none()
        {
            diags.push(
                Diagnostic::error(
                    "yaml::user",
                    format!("no user `{user}` on this machine"),
                    src,
                    s.name_span.clone(),
                )
                .with_help("create the user, or give a numeric `uid:gid`"),
            );
        }
    }
    let mut ports: IndexMap<u16, &Service> = IndexMap::new();
    for s in eco.services.values() {
        if let PortSpec::Fixed(p) = s.port {
            if p == 0 {
                continue;
            }
            let span = s.port_span.clone().unwrap_or(s.name_span.clone());
            if let Some(first) = ports.get(&p) {
                diags.push(
                    Diagnostic::error(
                        "yaml::duplicate-port",
                        format!(
                            "port {p} is given to both `{}` and `{}`",
                            first.name, s.name
                        ),
                        src,
                        span,
                    )
                    .with_secondary(
                        first.port_span.clone().unwrap_or(first.name_span.clone()),
                        format!("`{}` has it", first.name),
                    )
                    .with_help(
                        "give each service its own port, or remove `port:` to let pactown pick one",
                    ),
                );
            } else {
                ports.insert(p, s);
            }
        }
    }
}

/// A wasm runtime needs a language with a WASM build; memory must fit the engine's pool.
fn check_runtime(s: &Service, src: &Arc<SourceFile>, diags: &mut Diagnostics) {
    let Some((kind, _)) = s.runtime_override().filter(|(k, _)| k.is_wasm()) else {
        return check_memory(s, src, diags);
    };
    let span = s.runtime_span.clone().unwrap_or(s.name_span.clone());
    let language = super::language::language(s);
    let refuse = |message: String, help: &str| {
        Diagnostic::error("yaml::runtime", message, src, span.clone()).with_help(help.to_string())
    };
    if !language.builds_to_wasm() {
        diags.push(refuse(
            format!(
                "`{}` is {}, and only Rust, Python (a WSGI `app`) and JavaScript (a Worker) build to WebAssembly yet",
                s.name,
                language.as_str()
            ),
            "use `runtime: native`, or write the service in Rust (a `src/main.rs` file block), as a Python WSGI `app` or as a JavaScript Worker",
        ));
    } else if language == super::language::Language::Node {
        if kind != super::service::RuntimeKind::WasmHttp {
            diags.push(refuse(
                format!(
                    "`{}`: a JavaScript component serves HTTP; it cannot run as `{}`",
                    s.name,
                    kind.as_str()
                ),
                "use `runtime: wasm-http` with a Worker module, or `runtime: native`",
            ));
        } else if super::language::worker_entry(s).is_none() {
            diags.push(refuse(
                format!(
                    "`{}` has no Worker to serve as a component: no JavaScript file has `export default {{ fetch }}` or `addEventListener(\"fetch\", …)`",
                    s.name
                ),
                "write `export default { async fetch(request, env, ctx) { … } }` in `index.js`, or use `runtime: native`",
            ));
        } else if let Some(dep) = super::language::worker_blocker(s) {
            diags.push(refuse(
                format!(
                    "`{}` cannot be a component: {dep} has compiled parts (a native addon) that no component can carry",
                    s.name
                ),
                "use `runtime: native` with a run block, or drop the dependency",
            ));
        }
    } else if language == super::language::Language::Python {
        if kind != super::service::RuntimeKind::WasmHttp {
            diags.push(refuse(
                format!(
                    "`{}`: a Python component serves HTTP; it cannot run as `{}`",
                    s.name,
                    kind.as_str()
                ),
                "use `runtime: wasm-http` with a WSGI `app`, or `runtime: native`",
            ));
        } else if super::language::wsgi_entry(s).is_none() {
            diags.push(refuse(
                format!(
                    "`{}` has no WSGI `app` to serve as a component: no Python file defines a top-level `app` (an ASGI app such as FastAPI is not one)",
                    s.name
                ),
                "define `app = Flask(__name__)` (or `def app(environ, start_response)`) in `app.py`, or use `runtime: native`",
            ));
        } else if let Some(d) = super::language::native_only_dep(s) {
            diags.push(refuse(
                format!(
                    "`{}` cannot be a component: `{}` ({}) has no WASI build",
                    s.name, d.spec, d.loc
                ),
                "use `runtime: native` with a run block, or drop the dependency",
            ));
        }
    }
    check_memory(s, src, diags);
}

/// `instance_reuse` above 1 only where instances serve requests: every `wasm-http` shape (a WSGI
/// app, a Worker module or service worker, a Rust handler) serves any number in turn.
fn check_reuse(s: &Service, src: &Arc<SourceFile>, diags: &mut Diagnostics) {
    let (n, Some(span)) = &s.instance_reuse else {
        return;
    };
    let (kind, _) = super::language::runtime_kind(s);
    if *n <= 1 || kind == super::service::RuntimeKind::WasmHttp {
        return;
    }
    diags.push(
        Diagnostic::error(
            "yaml::instance-reuse",
            format!(
                "`{}` runs as `{}`: `instance_reuse` applies to `wasm-http` services, which get an instance per request",
                s.name,
                kind.as_str()
            ),
            src,
            span.clone(),
        )
        .with_help("remove `instance_reuse` (a fresh instance per request)"),
    );
}

/// A wasm instance's memory fits the engine's pool.
fn check_memory(s: &Service, src: &Arc<SourceFile>, diags: &mut Diagnostics) {
    if let Some(m) = s.limits.memory
        && m > MAX_WASM_MEMORY
        && super::language::runtime_kind(s).0.is_wasm()
    {
        diags.push(
            Diagnostic::error(
                "yaml::range",
                format!(
                    "`{}` asks for {} MiB per instance; wasm instances may have at most {} MiB",
                    s.name,
                    m >> 20,
                    MAX_WASM_MEMORY >> 20
                ),
                src,
                s.name_span.clone(),
            )
            .with_help(format!(
                "lower `limits.memory` to `{}G` or less",
                MAX_WASM_MEMORY >> 30
            )),
        );
    }
}
