//! `pactown registry serve|list|search|show|readme|delete`, `pactown publish FILE` and
//! `pactown pull FILE` (see [`crate::registry`]); `pactown-registry` is `registry serve` with
//! the reference's flags.

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, Term, user_error};
use crate::registry::{self, client::Client, server};

/// The registry: serve one, or read one.
#[derive(Debug, clap::Args)]
pub struct RegistryCommand {
    /// What to do.
    #[command(subcommand)]
    pub what: RegistryWhat,
}

/// Registry commands.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryWhat {
    /// Serve a registry (the reference's API, versions immutable, publishing authorised)
    Serve(ServeCommand),
    /// List artifacts
    List(ListCommand),
    /// Search artifacts by name, description or tag
    Search(SearchCommand),
    /// Show one artifact and its versions
    Show(ShowCommand),
    /// Print a version's README
    Readme(ShowCommand),
    /// Delete an artifact (needs the registry's token)
    Delete(DeleteCommand),
}

/// `pactown registry serve`.
#[derive(Debug, clap::Args)]
pub struct ServeCommand {
    /// Address to listen on (anything but loopback needs `--token-file`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port (0: any free one).
    #[arg(long, short, default_value_t = 8800)]
    pub port: u16,
    /// Where blobs and the index are kept.
    #[arg(long, default_value = "./.pactown-registry")]
    pub storage: PathBuf,
    /// Tokens that may publish and delete, one per line; without it the registry serves
    /// loopback only.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Reading needs a token too.
    #[arg(long, requires = "token_file")]
    pub private: bool,
    /// The largest upload, in MiB.
    #[arg(long, default_value_t = (server::MAX_BODY >> 20) as u64)]
    pub max_upload_mib: u64,
    /// Accepted for the reference's command line; has no effect.
    #[arg(long, hide = true)]
    pub reload: bool,
}

impl ServeCommand {
    /// Run it until stopped.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let tokens = match &self.token_file {
            Some(f) => server::read_tokens(f)?,
            None => Vec::new(),
        };
        let addr = std::net::SocketAddr::new(self.host, self.port);
        if tokens.is_empty() && !self.host.is_loopback() {
            return Err(user_error(
                format!(
                    "refusing to serve on {addr} without a token: anyone who can reach it could publish and delete"
                ),
                Some("pass `--token-file FILE` (one token per line), or serve on 127.0.0.1"),
            ));
        }
        let opts = server::ServeOptions {
            addr,
            storage: self.storage.clone(),
            tokens,
            private: self.private,
            max_body: (self.max_upload_mib as usize) << 20,
        };
        let open = opts.tokens.is_empty();
        let storage = self.storage.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let serving = server::serve(opts, |bound| {
                term.info(&format!("Serving HTTP on http://{bound}/ (storage {})", storage.display()));
                if open {
                    term.note("no --token-file: anyone on this machine may publish; serving on loopback only");
                }
            });
            tokio::select! {
                r = serving => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        })?;
        Ok(ExitStatus::Success)
    }
}

/// Where a client command's registry is.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The registry (default: PACTOWN_REGISTRY, else http://localhost:8800).
    #[arg(long, short = 'r')]
    pub registry: Option<String>,
    /// A token (default: PACTOWN_REGISTRY_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let token = self.token.clone().or_else(|| env("PACTOWN_REGISTRY_TOKEN"));
        Client::new(registry::client::Registry {
            url: self
                .registry
                .clone()
                .or_else(|| env("PACTOWN_REGISTRY"))
                .unwrap_or_else(|| "http://localhost:8800".into()),
            token_source: if self.token.is_some() {
                "`--token`"
            } else {
                "PACTOWN_REGISTRY_TOKEN"
            }
            .into(),
            token,
        })
    }
}

/// `pactown registry list`.
#[derive(Debug, clap::Args)]
pub struct ListCommand {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this namespace.
    #[arg(long, short)]
    namespace: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `pactown registry search QUERY`.
#[derive(Debug, clap::Args)]
pub struct SearchCommand {
    /// What to look for in names, descriptions and tags.
    query: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `pactown registry show NAME [--version V]` (and `readme`).
#[derive(Debug, clap::Args)]
pub struct ShowCommand {
    /// `name` or `namespace/name`.
    name: String,
    /// A version, `latest`, or a range (`^1.2`).
    #[arg(long = "version", value_name = "VERSION", default_value = "latest")]
    version: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `pactown registry delete NAME`.
#[derive(Debug, clap::Args)]
pub struct DeleteCommand {
    /// `name` or `namespace/name`.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn split(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("default", name))
}

fn print_list(
    list: &[registry::store::ArtifactInfo],
    json: bool,
    term: &Term,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, list)?;
        writeln!(out)?;
        return Ok(());
    }
    if list.is_empty() {
        term.info("no artifacts");
    }
    for a in list {
        writeln!(
            out,
            "{}/{}  {}  ({})  {}",
            a.namespace,
            a.name,
            a.latest_version.as_deref().unwrap_or("-"),
            a.versions.join(", "),
            a.description
        )?;
    }
    Ok(())
}

impl RegistryCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        match self.what {
            RegistryWhat::Serve(c) => c.run(term),
            RegistryWhat::List(c) => {
                let list = c.client.client()?.list(c.namespace.as_deref(), None)?;
                print_list(&list, c.json, term)?;
                Ok(ExitStatus::Success)
            }
            RegistryWhat::Search(c) => {
                let list = c.client.client()?.list(None, Some(&c.query))?;
                print_list(&list, c.json, term)?;
                Ok(ExitStatus::Success)
            }
            RegistryWhat::Show(c) => {
                let (ns, name) = split(&c.name);
                let client = c.client.client()?;
                let Some(v) = client.version(ns, name, &c.version)? else {
                    return Err(user_error(
                        format!(
                            "{} has no `{ns}/{name}` matching `{}`",
                            client.url(),
                            c.version
                        ),
                        Some("see what is there with `pactown registry list`"),
                    ));
                };
                let mut out = std::io::stdout().lock();
                if c.json {
                    serde_json::to_writer_pretty(&mut out, &v)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{ns}/{name} {}\nchecksum  sha256:{}\npublished {}\nmetadata  {}",
                        v.version, v.checksum, v.published_at, v.metadata
                    )?;
                }
                Ok(ExitStatus::Success)
            }
            RegistryWhat::Readme(c) => {
                let (ns, name) = split(&c.name);
                let client = c.client.client()?;
                let Some(v) = client.version(ns, name, &c.version)? else {
                    return Err(user_error(
                        format!(
                            "{} has no `{ns}/{name}` matching `{}`",
                            client.url(),
                            c.version
                        ),
                        None,
                    ));
                };
                std::io::stdout()
                    .lock()
                    .write_all(v.readme_content.as_bytes())?;
                Ok(ExitStatus::Success)
            }
            RegistryWhat::Delete(c) => {
                let (ns, name) = split(&c.name);
                c.client.client()?.delete(ns, name)?;
                term.success(&format!("deleted {ns}/{name}"));
                Ok(ExitStatus::Success)
            }
        }
    }
}

/// Publish every local service of an ecosystem (its README bundle, its version, and its
/// component when it builds to one) to a registry.
#[derive(Debug, clap::Args)]
pub struct PublishCommand {
    /// The ecosystem file, or a README.
    pub file: PathBuf,
    /// The registry (default: PACTOWN_REGISTRY, else the ecosystem's `registry.url`).
    #[arg(long, short = 'r')]
    pub registry: Option<String>,
    /// The namespace (default: the ecosystem's `registry.namespace`).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// A token (default: PACTOWN_REGISTRY_TOKEN, else the ecosystem's `registry.auth_token`).
    #[arg(long)]
    pub token: Option<String>,
    /// Print what was published as JSON.
    #[arg(long)]
    pub json: bool,
}

impl PublishCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        let cache = crate::build::Cache::locate();
        let graph = crate::spec::graph::DependencyGraph::from_ecosystem(&eco)
            .map_err(crate::spec::Diagnostics::from)?;
        let facts = crate::facts::HostFacts::for_ecosystem(&eco);
        let plan = crate::plan::Plan::build(
            &eco,
            &graph,
            &crate::spec::ecosystem::assign_ports(&eco),
            &facts,
        );
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let built = crate::build::build_all(&plan, &eco, &cache, &say)?;
        let client = Client::new(registry::registry_for(
            &eco,
            None,
            self.registry.as_deref(),
            self.token.as_deref(),
        ))
        .map_err(|e| user_error(format!("{e:#}"), None))?;
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| eco.registry.namespace.clone());
        let published = registry::publish(&eco, &built, &client, &ns, &say)
            .map_err(|e| user_error(format!("{e:#}"), None))?;
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &published)?;
            writeln!(out)?;
        }
        for p in &published {
            let extra = p
                .component
                .as_deref()
                .map_or(String::new(), |c| format!(", component {c}"));
            match p.status {
                "published" => term.success(&format!(
                    "published {} {} (sha256:{}{extra})",
                    p.artifact, p.version, p.checksum
                )),
                _ => term.info(&format!(
                    "{} {} is already published with the same content",
                    p.artifact, p.version
                )),
            }
        }
        Ok(ExitStatus::Success)
    }
}

/// Fetch every `depends_on` from a registry (`registry:` not `local`), check its digests,
/// unpack it into the state dir and record it in `pactown.lock`.
#[derive(Debug, clap::Args)]
pub struct PullCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// The registry (default: PACTOWN_REGISTRY, else the dependency's or ecosystem's).
    #[arg(long, short = 'r')]
    pub registry: Option<String>,
    /// The namespace (default: the ecosystem's `registry.namespace`).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// A token (default: PACTOWN_REGISTRY_TOKEN, else the ecosystem's `registry.auth_token`).
    #[arg(long)]
    pub token: Option<String>,
    /// Fetch exactly what `pactown.lock` pins, and fail if it would change.
    #[arg(long)]
    pub locked: bool,
    /// Print the lock as JSON.
    #[arg(long)]
    pub json: bool,
}

impl PullCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let env = |k: &str| std::env::var(k).ok();
        let loaded = crate::spec::load_for_pull(&self.file, &env)?;
        term.diagnostics(&loaded.warnings);
        let eco = loaded.ecosystem;
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let report = registry::pull(
            &self.file,
            &eco,
            self.registry.as_deref(),
            self.token.as_deref(),
            self.namespace.as_deref(),
            self.locked,
            &say,
        )
        .map_err(|e| user_error(format!("{e:#}"), None))?;
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        if report.packages.is_empty() {
            term.info("nothing to pull: no `depends_on` names a registry");
        }
        for (name, l) in &report.packages {
            term.success(&format!(
                "{name}: {}/{} {} ({}){}",
                l.namespace,
                l.name,
                l.version,
                l.readme,
                if l.component.is_some() {
                    ", with its component"
                } else {
                    ""
                }
            ));
        }
        term.info(&format!(
            "{} {}",
            report.lock.display(),
            if report.changed {
                "written"
            } else {
                "unchanged"
            }
        ));
        Ok(ExitStatus::Success)
    }
}
