//! The one-shot commands, one module each; `main.rs` prints what they build.
//! (`pullgate config example` prints `pullgate_policy::config::example`.)
//!
//! - [`policy_check`](mod@policy_check): `pullgate policy check FILE`, validate and explain a policy file.
//! - [`verify`](mod@verify): `pullgate verify IMAGE`, render the gate's decision and its exit status.
//! - [`doctor`]: `pullgate doctor`, is this node enforcing.
//! - [`preflight`]: `pullgate preflight --config NEW`, what a new configuration would change on this node.
//!
//! [`error_chain`] is how every command's error is printed.

pub mod doctor;
pub mod placement;
pub mod policy_check;
pub mod preflight;
pub mod verify;

pub use placement::explain_placement;
pub use policy_check::{policy_check, CheckError};
pub use verify::{render, verify, Output};

/// `err` and its causes on one line, `outer: inner: innermost`, each cause
/// printed once: a cause whose text the line already holds (an error whose
/// message includes its source, as `std::io::Error` wrappers often do) is
/// not repeated.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that, as many do, prints its source in its own message and also returns it.
    #[derive(Debug, thiserror::Error)]
    #[error("opening {path}: {source}")]
    struct Repeats {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = policy_check(&missing).unwrap_err();
        let line = error_chain(&err);
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{line}"
        );
        assert!(line.starts_with("cannot read "), "{line}");
        assert!(line.contains("nope.toml"), "{line}");

        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let err = Repeats {
            path: "/x",
            source: io,
        };
        assert_eq!(error_chain(&err), format!("opening /x: {text}"));

        // A cause not in the message is appended.
        let err =
            crate::config_file::read(&crate::config_file::ConfigSource::Flag(missing)).unwrap_err();
        let line = error_chain(&err);
        assert!(
            line.starts_with("cannot read the configuration ")
                && line.ends_with("(--config): No such file or directory (os error 2)"),
            "{line}"
        );
    }
}
