//! Writes the OpenAPI documents business-logic serves at `/openapi.json`,
//! one with `/metrics` and one without, into `OUT_DIR`. They are built from
//! the contract here, at build time, so the binary carries two JSON
//! strings instead of the OpenAPI model and the code that builds and
//! serialises it: the kernel keeps nearly all of a binary's code resident,
//! so that code was idle memory (docs/performance.md, "Open work": the
//! idle memory of business-logic).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (metrics, name) in [(false, "openapi.json"), (true, "openapi-metrics.json")] {
        let document = serde_json::to_vec(&contract::openapi::document(metrics))
            .expect("the OpenAPI document serialises");
        std::fs::write(out.join(name), document).expect("OUT_DIR is writable");
    }
    // Cargo reruns this when a build dependency (the contract) changes.
    println!("cargo::rerun-if-changed=build.rs");
}
