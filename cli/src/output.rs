//! Colour on a terminal only, and output that a closed pipe (`| head`) ends quietly.

/// `println!`, except that a reader that went away is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::io::IsTerminal;

/// ANSI styles, or nothing when the stream is not a terminal (or `NO_COLOR` is set).
#[derive(Clone, Copy)]
pub(crate) struct Style {
    on: bool,
}

impl Style {
    fn for_stream(terminal: bool) -> Self {
        Style { on: terminal && std::env::var_os("NO_COLOR").is_none() }
    }

    pub(crate) fn stdout() -> Self {
        Self::for_stream(std::io::stdout().is_terminal())
    }

    pub(crate) fn stderr() -> Self {
        Self::for_stream(std::io::stderr().is_terminal())
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub(crate) fn error(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub(crate) fn warning(self, text: &str) -> String {
        self.paint("1;33", text)
    }

    pub(crate) fn good(self, text: &str) -> String {
        self.paint("1;32", text)
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}
