//! Golden tests of `pactown deploy`'s three outputs (Kubernetes, Compose, Quadlet) for the
//! all-wasm platform and the mixed polyglot shop, each also passing `--check`. Review changes
//! with `cargo insta review`.

use pactown_host::deploy::{self, Network, Options, Target};
use pactown_host::facts::HostFacts;
use pactown_host::plan::Plan;
use pactown_host::spec::ecosystem::assign_ports;
use pactown_host::spec::graph::DependencyGraph;

fn render(example: &str, target: Target, network: Network) -> String {
    let path = std::path::Path::new("../examples").join(example);
    let eco = pactown_host::spec::load(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)))
        .ecosystem;
    let graph = DependencyGraph::from_ecosystem(&eco).unwrap();
    let plan = Plan::build(&eco, &graph, &assign_ports(&eco), &HostFacts::fixed());
    let opts = Options {
        target,
        image_prefix: "registry.example.com/team/".into(),
        cpu: pactown_runtime::wasm::CpuTarget::Baseline,
        network,
        base_images: Default::default(),
    };
    let d = deploy::deployment(&plan, &eco, &opts).unwrap();
    let files = match target {
        Target::Kubernetes => deploy::kubernetes::files(&d),
        Target::Compose => deploy::compose::files(&d),
        Target::Quadlet => deploy::quadlet::files(&d),
    }
    .unwrap();
    let problems = deploy::check::check(&d, &plan, target, &files);
    assert!(problems.is_empty(), "{problems:?}");
    files
        .iter()
        .map(|(p, t)| format!("==> {} <==\n{t}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_rust_platform() {
    for (target, name) in [
        (Target::Kubernetes, "kubernetes"),
        (Target::Compose, "compose"),
        (Target::Quadlet, "quadlet"),
    ] {
        insta::assert_snapshot!(
            format!("platform-rust-{name}"),
            render(
                "platform-rust/platform.pactown.yaml",
                target,
                Network::Bridge
            )
        );
    }
}

#[test]
fn the_polyglot_shop() {
    for (target, name) in [
        (Target::Kubernetes, "kubernetes"),
        (Target::Compose, "compose"),
        (Target::Quadlet, "quadlet"),
    ] {
        insta::assert_snapshot!(
            format!("polyglot-{name}"),
            render("polyglot/shop.pactown.yaml", target, Network::Bridge)
        );
    }
    insta::assert_snapshot!(
        "polyglot-compose-host-network",
        render("polyglot/shop.pactown.yaml", Target::Compose, Network::Host)
    );
}
