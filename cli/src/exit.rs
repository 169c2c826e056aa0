//! Exit codes, and errors that carry one.
//!
//! Commands return `anyhow::Result<Code>`; an error that should end with a
//! specific code is wrapped with [`Coded`] (through [`WithCode`]). Anything
//! else exits with [`Code::Failure`].

use std::fmt;

/// The documented exit codes of `bittern` (see `bittern --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// A runtime failure: a torrent stopped with an error, IO failed.
    Failure = 1,
    /// Bad input: wrong arguments, a missing or invalid torrent file, a bad
    /// magnet link, a bad size, rate or duration.
    Usage = 2,
    /// `verify` (or `seed`) found data missing or corrupt.
    BadData = 3,
    /// The network: the listening port is in use or cannot be bound.
    Network = 4,
    /// The save directory cannot be created or written.
    Filesystem = 5,
    /// Stopped by SIGINT/SIGTERM before the work was done (after a graceful
    /// stop), or at once by a second signal.
    Interrupted = 130,
}

/// The `--help` text describing the exit codes.
pub const HELP: &str = "\
Exit codes:
  0    success
  1    runtime failure (a torrent stopped with an error, IO failed)
  2    bad input: arguments, a missing or invalid torrent file, a bad magnet link
  3    verify (or seed) found missing or corrupt data
  4    network: the listening port is in use or cannot be bound
  5    the save directory cannot be created or written
  130  interrupted by Ctrl-C/SIGTERM before finishing (a second signal exits at once)";

/// An error with the exit code it should end the process with.
pub struct Coded {
    /// The exit code.
    pub code: Code,
    inner: anyhow::Error,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

impl fmt::Debug for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?})", self.inner, self.code)
    }
}

// No `source()`: the Display already prints the inner chain once.
impl std::error::Error for Coded {}

/// Builds a [`Coded`] error.
pub fn coded(code: Code, e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        inner: e.into(),
    })
}

/// `.code(Code::Usage)` on results, like anyhow's `.context`.
pub trait WithCode<T> {
    /// Tags the error with `code`.
    fn code(self, code: Code) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> WithCode<T> for Result<T, E> {
    fn code(self, code: Code) -> anyhow::Result<T> {
        self.map_err(|e| coded(code, e))
    }
}

/// The exit code for `err`: the outermost [`Coded`] in its chain, else 1.
pub fn code_of(err: &anyhow::Error) -> Code {
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>())
        .map_or(Code::Failure, |c| c.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_survive_context() {
        let e: anyhow::Result<()> = Err(std::io::Error::other("boom")).code(Code::Network);
        let e = e.context("cannot listen").unwrap_err();
        assert_eq!(code_of(&e), Code::Network);
        assert_eq!(format!("{e:#}"), "cannot listen: boom");
        let plain = anyhow::anyhow!("plain");
        assert_eq!(code_of(&plain), Code::Failure);
    }
}
