//! The ecosystem loader (YAML, interpolation, checks, graph) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".to_string());
        match pactown_host::spec::load_str(std::path::Path::new("fuzz/x.pactown.yaml"), text.to_string(), &env) {
            Ok(loaded) => {
                let graph = pactown_host::spec::graph::DependencyGraph::from_ecosystem(&loaded.ecosystem).expect("checked");
                let ports = pactown_host::spec::ecosystem::assign_ports(&loaded.ecosystem);
                let _ = pactown_host::plan::Plan::build(
                    &loaded.ecosystem,
                    &graph,
                    &ports,
                    &pactown_host::facts::HostFacts::fixed(),
                );
            }
            Err(diags) => {
                let _ = diags.render(false);
            }
        }
    }
});
