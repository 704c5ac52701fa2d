//! The default builds need nothing but a Rust toolchain and a C compiler/linker.
//!
//! `cargo build --release -p chitti-hub` (the demo included) and `-p chitti-agent` must
//! succeed on a machine without cmake, libclang, libudev or any `pkg-config` package.
//! This test reads both crates' normal and build dependency graphs (`cargo tree -e
//! normal,build`, default features, this host) and fails on any crate that needs a
//! system tool or library, naming the crate and the path that pulled it in.
//!
//! Two lists decide:
//! * [`NEEDS_THE_SYSTEM`]: crates that always need a system tool or library;
//! * [`SYS_CRATES_THAT_BUILD_ALONE`]: the `-sys` crates we accept, each with why it
//!   builds with nothing installed. Any other `-sys` crate fails the test until someone
//!   checks it and adds it here with a reason.
//!
//! It also checks that `common` stays pure: no clock and no randomness outside tests.

use chitti_e2e::workspace_root;
use std::process::Command;

/// Crates whose build needs a system tool or library, and what it needs.
const NEEDS_THE_SYSTEM: &[(&str, &str)] = &[
    ("bindgen", "libclang"),
    ("clang-sys", "libclang"),
    ("cmake", "the cmake tool"),
    ("autotools", "autoconf/automake"),
    ("charls-sys", "cmake and a C++ compiler (CharLS)"),
    ("libudev-sys", "libudev-dev through pkg-config"),
    ("v4l2-sys-mit", "libclang (bindgen over the kernel headers)"),
    ("v4l-sys", "libv4l-dev and libclang"),
    ("openssl-sys", "libssl-dev through pkg-config"),
    (
        "aws-lc-sys",
        "cmake or a recent C compiler with NASM (aws-lc)",
    ),
    ("aws-lc-fips-sys", "cmake, Go and NASM"),
    ("libdbus-sys", "libdbus-1-dev through pkg-config"),
    ("libusb1-sys", "libusb-1.0 through pkg-config"),
    ("zstd-sys", "pkg-config when not vendored"),
];

/// `-sys` crates that build from bundled sources or bind without linking, and why.
const SYS_CRATES_THAT_BUILD_ALONE: &[(&str, &str)] = &[
    (
        "libsqlite3-sys",
        "SQLite's amalgamation compiled by `cc` (feature `bundled`, checked below)",
    ),
    ("linux-raw-sys", "pure Rust kernel ABI definitions"),
    ("inotify-sys", "pure Rust declarations of libc functions"),
    (
        "ort-sys",
        "`load-dynamic`: ONNX Runtime is opened at run time, nothing linked or downloaded",
    ),
    ("windows-sys", "pure Rust declarations (not built on Linux)"),
];

/// One line of `cargo tree --prefix depth`: how deep, and which crate.
struct TreeLine {
    depth: usize,
    name: String,
    version: String,
}

fn cargo_tree(package: &str, extra: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args(["tree", "--locked", "-e", "normal,build", "-p", package])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 tree")
}

fn parse_tree(text: &str) -> Vec<TreeLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let digits = line.chars().take_while(char::is_ascii_digit).count();
            let depth = line[..digits].parse().expect("depth prefix");
            let mut words = line[digits..].split_whitespace();
            let name = words.next().expect("crate name").to_string();
            let version = words.next().unwrap_or("").to_string();
            TreeLine {
                depth,
                name,
                version,
            }
        })
        .collect()
}

/// Every crate in `package`'s default build that needs the system, with the path from
/// the root to it (`chitti-hub → chitti-agent → v4l → v4l2-sys-mit`).
fn system_dependencies(package: &str, features: &[&str]) -> Vec<String> {
    let mut args = vec!["--prefix", "depth"];
    if !features.is_empty() {
        args.push("--features");
        args.extend(features);
    }
    let lines = parse_tree(&cargo_tree(package, &args));
    assert!(
        lines.first().is_some_and(|l| l.name == package),
        "{package}: unexpected cargo tree output"
    );
    let mut path: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for line in &lines {
        path.truncate(line.depth);
        path.push(format!("{} {}", line.name, line.version));
        let reason = NEEDS_THE_SYSTEM
            .iter()
            .find(|(name, _)| *name == line.name)
            .map(|(_, needs)| format!("needs {needs}"))
            .or_else(|| {
                let unreviewed = line.name.ends_with("-sys")
                    && !SYS_CRATES_THAT_BUILD_ALONE
                        .iter()
                        .any(|(name, _)| *name == line.name);
                unreviewed.then(|| {
                    "is a -sys crate nobody has checked builds without system packages \
                     (check it, then add it to SYS_CRATES_THAT_BUILD_ALONE with why)"
                        .to_string()
                })
            });
        if let Some(reason) = reason {
            problems.push(format!("{} {reason}: {}", line.name, path.join(" → ")));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[test]
fn the_default_agent_build_needs_no_system_package() {
    let problems = system_dependencies("chitti-agent", &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_default_hub_build_needs_no_system_package() {
    let problems = system_dependencies("chitti-hub", &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_demo_build_needs_no_system_package() {
    // README's first command builds the hub with its `demo` feature (the agent inside).
    let problems = system_dependencies("chitti-hub", &["demo"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_default_hub_build_links_no_agent_code() {
    let crates: Vec<String> = parse_tree(&cargo_tree("chitti-hub", &["--prefix", "depth"]))
        .into_iter()
        .map(|line| line.name)
        .collect();
    assert!(crates.iter().any(|c| c == "chitti-common"), "{crates:?}");
    assert!(!crates.iter().any(|c| c == "chitti-agent"), "{crates:?}");
    // The demo feature is what brings the agent in (so the check above can fail).
    let demo = parse_tree(&cargo_tree(
        "chitti-hub",
        &["--prefix", "depth", "--features", "demo"],
    ));
    assert!(demo.iter().any(|line| line.name == "chitti-agent"));
}

#[test]
fn sqlite_is_compiled_from_its_bundled_source() {
    // Without `bundled`, libsqlite3-sys links the system's libsqlite3 (pkg-config).
    let features = cargo_tree(
        "chitti-hub",
        &["-e", "features", "-i", "libsqlite3-sys", "--prefix", "none"],
    );
    assert!(
        features.contains("libsqlite3-sys feature \"bundled\""),
        "libsqlite3-sys is built without its bundled SQLite:\n{features}"
    );
}

#[test]
fn the_gateway_build_with_v4l2_is_named_with_its_path() {
    // The opposite check, so the lists above cannot silently stop matching: the
    // `v4l2` feature pulls bindgen, and the test names it with the path that pulled it.
    let problems = system_dependencies("chitti-agent", &["v4l2"]);
    assert!(
        problems.iter().any(
            |p| p.starts_with("bindgen needs libclang: chitti-agent ") && p.contains(" → v4l ")
        ),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("v4l2-sys-mit needs")),
        "{problems:#?}"
    );
}

/// `common` is pure: outside its tests it reads no clock and draws no random number
/// (ids and times are passed in), so the same input gives the same finding anywhere.
#[test]
fn common_reads_no_clock_and_no_randomness() {
    let forbidden = [
        "Utc::now(",
        "Local::now(",
        "now_v7(",
        "new_v4(",
        "SystemTime::now(",
        "Instant::now(",
        "getrandom",
        "thread_rng",
    ];
    let mut found = Vec::new();
    let mut folders = vec![workspace_root().join("common/src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Everything from the test module on is test code.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for f in forbidden {
                    if line.contains(f) {
                        found.push(format!("{}:{}: {line}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "clock or randomness in common:\n{}",
        found.join("\n")
    );
}
