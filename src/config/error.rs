//! Configuration diagnostics: each names the file, line, column and key path, and where
//! it can, the nearest valid name.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single place (a missing file).
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// Dotted key path, e.g. `apps.thrift.sign_in.steps[0]`.
    pub path: String,
    pub message: String,
    /// "did you mean `google`?"
    pub suggestion: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.path.is_empty() && !self.message.contains(&self.path) {
            write!(f, " (at {})", self.path)?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// The diagnostics one a line, without the `error: ` that [`Display`](fmt::Display)
    /// puts before the first: for a caller that prefixes the message itself (the
    /// start-up's fatal error), so nobody reads `error: error: …`.
    pub fn unprefixed(&self) -> String {
        self.0
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\nerror: ")
    }
}

/// Every problem found in one load; a config with any of these is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}
