//! What the package says about itself is true: the minimum Rust version is
//! the one its locked dependencies need, and the license it names is there.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `key = "value"` in a TOML text, at the start of a line.
fn value_of<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    toml.lines()
        .find_map(|line| line.strip_prefix(&format!("{key} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
}

fn version(text: &str) -> Vec<u32> {
    text.split('.').map(|n| n.parse().unwrap()).collect()
}

/// The unpacked sources cargo downloaded, where each crate's manifest is.
fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    std::fs::read_dir(home.join("registry/src"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect()
}

#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let sources = registry_sources();
    let (mut checked, mut from_registry) = (0, 0);
    let mut needed = (vec![0], String::new());
    for package in lock.split("[[package]]").skip(1) {
        if !value_of(package, "source").is_some_and(|s| s.starts_with("registry+")) {
            continue;
        }
        from_registry += 1;
        let name = value_of(package, "name").unwrap();
        let at = value_of(package, "version").unwrap();
        let Some(manifest) = sources
            .iter()
            .map(|s| s.join(format!("{name}-{at}/Cargo.toml")))
            .find(|m| m.exists())
        else {
            continue; // a platform-only crate this machine never downloaded
        };
        checked += 1;
        let manifest = std::fs::read_to_string(manifest).unwrap();
        if let Some(rust) = value_of(&manifest, "rust-version") {
            if version(rust) > needed.0 {
                needed = (version(rust), format!("{name} {at} needs {rust}"));
            }
        }
    }
    assert!(
        checked * 10 >= from_registry * 8,
        "only {checked} of {from_registry} locked crates found to check"
    );
    let ours = value_of(
        &std::fs::read_to_string(root().join("Cargo.toml")).unwrap(),
        "rust-version",
    )
    .unwrap()
    .to_owned();
    let pad = |mut v: Vec<u32>| {
        v.resize(3, 0);
        v
    };
    assert_eq!(
        pad(version(&ours)),
        pad(needed.0),
        "rust-version {ours}: {}",
        needed.1
    );
}

#[test]
fn the_license_named_in_the_manifest_is_shipped() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert_eq!(value_of(&manifest, "license"), Some("MIT"));
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(license.starts_with("MIT License"), "{license}");
}
