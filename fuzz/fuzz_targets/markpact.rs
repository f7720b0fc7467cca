//! The markpact parser never panics, whatever the README holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pactown_host::spec::{Diagnostics, ServiceSource};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut diags = Diagnostics::default();
        let source = ServiceSource::from_text(std::path::Path::new("fuzz/README.md"), text.to_string(), &mut diags);
        // Rendering exercises every span the parser produced.
        let _ = diags.render(false);
        for f in &source.files {
            assert!(!f.path.as_str().starts_with('/') && !f.path.as_str().split('/').any(|c| c == ".."));
        }
    }
});
