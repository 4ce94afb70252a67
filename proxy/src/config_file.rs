//! Which configuration file a command uses, and reading it.
//!
//! Every entry point (`serve`, `verify`, `doctor`, `policy check` without a
//! file, and containerd's image verifier call) resolves its configuration
//! through [`load`], so `pullgate verify IMAGE` on a node decides with the
//! file the daemon uses. The order:
//!
//! 1. `--config PATH`, when given;
//! 2. `$PULLGATE_CONFIG`, when set and not empty;
//! 3. `/etc/pullgate/pullgate.toml`, when it exists;
//! 4. the built-in defaults ([`Config::default`]).
//!
//! A file named by 1 or 2 must exist: a typo there is an error, not a silent
//! fall back to the defaults. [`load`] logs the choice at `info` (stderr).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use pullgate_policy::config::{Config, ConfigError};

/// The configuration file read when neither `--config` nor `$PULLGATE_CONFIG` names one.
pub const SYSTEM_CONFIG: &str = "/etc/pullgate/pullgate.toml";

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "PULLGATE_CONFIG";

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config PATH`.
    Flag(PathBuf),
    /// `$PULLGATE_CONFIG`.
    Env(PathBuf),
    /// [`SYSTEM_CONFIG`], which exists.
    System(PathBuf),
    /// No file: the built-in defaults.
    Defaults,
}

impl ConfigSource {
    /// The file to read; `None` for the built-in defaults.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Flag(p) | Self::Env(p) | Self::System(p) => Some(p),
            Self::Defaults => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(p) => write!(f, "{} (--config)", p.display()),
            Self::Env(p) => write!(f, "{} (${CONFIG_ENV})", p.display()),
            Self::System(p) => write!(f, "{}", p.display()),
            Self::Defaults => write!(
                f,
                "built-in defaults (no --config, ${CONFIG_ENV} unset, no {SYSTEM_CONFIG})"
            ),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read the configuration {source_name}")]
    Read {
        /// Which file, and how it was chosen.
        source_name: ConfigSource,
        /// Why.
        #[source]
        cause: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("in the configuration {source_name}")]
    Invalid {
        /// Which file, and how it was chosen.
        source_name: ConfigSource,
        /// Why.
        #[source]
        cause: Box<ConfigError>,
    },
}

/// Picks the configuration source: `flag`, else `env` (the value of
/// `$PULLGATE_CONFIG`, ignored when empty), else `system` when
/// `system_exists`, else the defaults. Pure, for tests.
pub fn resolve(
    flag: Option<&Path>,
    env: Option<OsString>,
    system: &Path,
    system_exists: bool,
) -> ConfigSource {
    if let Some(p) = flag {
        return ConfigSource::Flag(p.to_path_buf());
    }
    match env {
        Some(p) if !p.is_empty() => ConfigSource::Env(PathBuf::from(p)),
        _ if system_exists => ConfigSource::System(system.to_path_buf()),
        _ => ConfigSource::Defaults,
    }
}

/// Resolves the configuration as every command does (see the module docs)
/// from `--config` and the process environment. Blocking (stats a file).
pub fn source(flag: Option<&Path>) -> ConfigSource {
    let system = Path::new(SYSTEM_CONFIG);
    resolve(
        flag,
        std::env::var_os(CONFIG_ENV),
        system,
        flag.is_none() && system.exists(),
    )
}

/// Resolves and reads the configuration, logging which file was used.
/// Blocking (reads a file).
///
/// # Errors
/// [`LoadError`] naming the file and how it was chosen.
pub fn load(flag: Option<&Path>) -> Result<(Config, ConfigSource), LoadError> {
    let source = source(flag);
    let config = read(&source)?;
    tracing::info!(config = %source, "configuration");
    Ok((config, source))
}

/// Reads the configuration `source` names. Blocking.
///
/// # Errors
/// [`LoadError`] naming the file.
pub fn read(source: &ConfigSource) -> Result<Config, LoadError> {
    let Some(path) = source.path() else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path).map_err(|cause| LoadError::Read {
        source_name: source.clone(),
        cause,
    })?;
    Config::from_toml(&text).map_err(|cause| LoadError::Invalid {
        source_name: source.clone(),
        cause: Box::new(cause),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_system_file() {
        let sys = Path::new("/etc/pullgate/pullgate.toml");
        let flag = Path::new("/a.toml");
        let env = || Some(OsString::from("/b.toml"));
        assert_eq!(
            resolve(Some(flag), env(), sys, true),
            ConfigSource::Flag(flag.into())
        );
        assert_eq!(
            resolve(None, env(), sys, true),
            ConfigSource::Env("/b.toml".into())
        );
        assert_eq!(
            resolve(None, None, sys, true),
            ConfigSource::System(sys.into())
        );
        assert_eq!(
            resolve(None, Some(OsString::new()), sys, true),
            ConfigSource::System(sys.into())
        );
        assert_eq!(resolve(None, None, sys, false), ConfigSource::Defaults);
    }

    #[test]
    fn a_named_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ConfigSource::Env(dir.path().join("nope.toml"));
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.toml ($PULLGATE_CONFIG)"));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[server]\nsocekt = \"/x\"\n").unwrap();
        let err = read(&ConfigSource::Flag(bad)).unwrap_err();
        assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[server]\nsocket = \"/tmp/x.sock\"\n").unwrap();
        let c = read(&ConfigSource::Env(good)).unwrap();
        assert_eq!(c.server.socket, Path::new("/tmp/x.sock"));
        assert_eq!(
            read(&ConfigSource::Defaults).unwrap().server.socket,
            Config::default().server.socket
        );
    }
}
