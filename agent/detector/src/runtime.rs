//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! The `ort` crate is built with `load-dynamic`: nothing of ONNX Runtime is linked, and
//! the library (`libonnxruntime.so.<version>` from the PyPI wheel,
//! `models/fetch-onnxruntime.sh`) is opened at run time with `ort::init_from`, which
//! returns an error instead of panicking like `ort::init` does when no library is found.
//!
//! Where the library is looked for, first match wins:
//! 1. `detector.library` in the configuration;
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. `libonnxruntime.so`, else the newest `libonnxruntime.so.*`, next to the executable.
//!
//! ONNX Runtime allows one library and one environment per process (`ort` keeps both in
//! process globals and refuses a second environment). So the first successful load is
//! kept for the life of the process and shared by every session; asking later for a
//! *different* file is an error ([`DetectorError::LibraryConflict`]) instead of silently
//! running on the first one. A failed load keeps nothing, so a corrected path can be
//! tried again in the same process.
//!
//! `ort` is pinned at API level 17, so any ONNX Runtime ≥ 1.17 loads. The wheel is
//! `manylinux_2_28` (x86_64 or `--arch aarch64`): the gateway needs glibc ≥ 2.28.

use super::DetectorError;
use ort::environment::Environment;
use ort::logging::LogLevel;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The file name the library is looked for under next to the executable.
pub const LIBRARY_FILE_NAME: &str = "libonnxruntime.so";

/// Where a library path came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryOrigin {
    /// `detector.library`.
    Config,
    /// `ORT_DYLIB_PATH`.
    Environment,
    /// Next to the executable.
    BesideExecutable,
}

impl std::fmt::Display for LibraryOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Config => "detector.library",
            Self::Environment => "ORT_DYLIB_PATH",
            Self::BesideExecutable => "next to the executable",
        })
    }
}

/// Finds the library: the configured path, else `ORT_DYLIB_PATH`, else next to the
/// executable. A configured or environment path that is not a file is an error
/// naming it (not a reason to look elsewhere: the operator asked for that file).
pub fn resolve_library(
    configured: Option<&Path>,
) -> Result<(PathBuf, LibraryOrigin), DetectorError> {
    let env = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    resolve_library_from(
        configured,
        env.as_deref().map(Path::new),
        exe_dir.as_deref(),
    )
}

fn resolve_library_from(
    configured: Option<&Path>,
    env: Option<&Path>,
    exe_dir: Option<&Path>,
) -> Result<(PathBuf, LibraryOrigin), DetectorError> {
    for (path, origin) in [
        (configured, LibraryOrigin::Config),
        (env, LibraryOrigin::Environment),
    ] {
        if let Some(path) = path {
            if !path.is_file() {
                return Err(DetectorError::LibraryNotFound {
                    path: path.to_path_buf(),
                    origin,
                });
            }
            return Ok((path.to_path_buf(), origin));
        }
    }
    if let Some(dir) = exe_dir {
        let exact = dir.join(LIBRARY_FILE_NAME);
        if exact.is_file() {
            return Ok((exact, LibraryOrigin::BesideExecutable));
        }
        let prefix = format!("{LIBRARY_FILE_NAME}.");
        let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        versioned.sort_by_key(|p| version_key(p));
        if let Some(newest) = versioned.pop() {
            return Ok((newest, LibraryOrigin::BesideExecutable));
        }
    }
    Err(DetectorError::LibraryMissing {
        searched: exe_dir.map_or_else(
            || "the executable's folder (unknown)".to_string(),
            |d| d.display().to_string(),
        ),
    })
}

/// `libonnxruntime.so.1.32.0` → `[1, 32, 0]`, so 1.4 sorts before 1.32.
fn version_key(path: &Path) -> Vec<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(LIBRARY_FILE_NAME))
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The loaded ONNX Runtime: its environment and the file it came from.
#[derive(Debug)]
pub struct Runtime {
    /// The process's one environment.
    pub environment: Environment,
    /// The library file (as resolved).
    pub library: PathBuf,
    /// Where that path came from.
    pub origin: LibraryOrigin,
}

// The library `ort` opened (set once `init_from` succeeded, even if the environment
// then failed: the library stays loaded either way).
static LOADED_LIBRARY: OnceLock<PathBuf> = OnceLock::new();
static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The process's ONNX Runtime, loading the library found by [`resolve_library`] on
/// first use. Thread-safe; later calls return the same runtime when they resolve to
/// the same file.
pub fn runtime(configured: Option<&Path>) -> Result<Arc<Runtime>, DetectorError> {
    let (path, origin) = resolve_library(configured)?;
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(loaded) = LOADED_LIBRARY.get() {
        if !same_file(loaded, &path) {
            return Err(DetectorError::LibraryConflict {
                loaded: loaded.clone(),
                requested: path,
            });
        }
    }
    if let Some(runtime) = slot.as_ref() {
        return Ok(Arc::clone(runtime));
    }
    let builder = ort::init_from(&path).map_err(|e| DetectorError::LibraryLoad {
        path: path.clone(),
        origin,
        reason: load_error_reason(&e),
    })?;
    let _ = LOADED_LIBRARY.set(path.clone());
    let environment = builder
        .with_name("chitti-agent")
        .with_telemetry(false)
        .with_logger(Arc::new(log_from_onnx_runtime))
        .build()
        .map_err(|e| DetectorError::Environment(e.to_string()))?;
    // The custom logger is registered at verbose level; only warnings and worse are
    // worth formatting.
    environment.set_log_level(LogLevel::Warning);
    tracing::info!(library = %path.display(), %origin, "onnx runtime loaded");
    let runtime = Arc::new(Runtime {
        environment,
        library: path,
        origin,
    });
    *slot = Some(Arc::clone(&runtime));
    Ok(runtime)
}

/// `ort`'s words, with the dynamic loader's own (`dlerror`: "invalid ELF header",
/// "wrong ELF class", a missing dependency), which `ort`'s message leaves out.
fn load_error_reason(e: &ort::LoadDynamicError) -> String {
    let mut reason = e.to_string();
    if let ort::LoadDynamicError::Dlopen { error, .. } = e {
        if let Some(detail) = std::error::Error::source(error) {
            reason.push_str(&format!(" ({detail})"));
        }
    }
    reason
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// ONNX Runtime's own log lines, as tracing events.
fn log_from_onnx_runtime(
    level: LogLevel,
    category: &str,
    _id: &str,
    location: &str,
    message: &str,
) {
    match level {
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(target: "onnxruntime", category, location, "{message}")
        }
        LogLevel::Warning => tracing::warn!(target: "onnxruntime", category, location, "{message}"),
        LogLevel::Info => tracing::debug!(target: "onnxruntime", category, "{message}"),
        LogLevel::Verbose => tracing::trace!(target: "onnxruntime", category, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_path_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libonnxruntime.so.1.32.0");
        std::fs::write(&lib, b"x").unwrap();
        let other = dir.path().join("other.so");
        std::fs::write(&other, b"x").unwrap();
        let (p, o) = resolve_library_from(Some(&lib), Some(&other), Some(dir.path())).unwrap();
        assert_eq!((p, o), (lib.clone(), LibraryOrigin::Config));
        let (p, o) = resolve_library_from(None, Some(&other), Some(dir.path())).unwrap();
        assert_eq!((p, o), (other, LibraryOrigin::Environment));
        let missing = dir.path().join("nope.so");
        let err = resolve_library_from(Some(&missing), Some(&lib), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "onnx runtime library not found at {} (from detector.library)",
                missing.display()
            )
        );
        let err = resolve_library_from(None, Some(&missing), None).unwrap_err();
        assert!(err.to_string().contains("(from ORT_DYLIB_PATH)"), "{err}");
    }

    #[test]
    fn beside_the_executable_the_plain_name_then_the_newest_version_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_library_from(None, None, Some(dir.path())).unwrap_err();
        assert!(
            err.to_string().contains("ORT_DYLIB_PATH")
                && err.to_string().contains("fetch-onnxruntime.sh"),
            "{err}"
        );
        for v in ["1.4.0", "1.32.0", "1.17.1"] {
            std::fs::write(dir.path().join(format!("libonnxruntime.so.{v}")), b"x").unwrap();
        }
        let (p, o) = resolve_library_from(None, None, Some(dir.path())).unwrap();
        assert_eq!(o, LibraryOrigin::BesideExecutable);
        assert!(p.ends_with("libonnxruntime.so.1.32.0"), "{}", p.display());
        std::fs::write(dir.path().join("libonnxruntime.so"), b"x").unwrap();
        let (p, _) = resolve_library_from(None, None, Some(dir.path())).unwrap();
        assert!(p.ends_with("libonnxruntime.so"), "{}", p.display());
    }
}
