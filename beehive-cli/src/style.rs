//! Colours: decided once per stream (terminal, `--color`, `NO_COLOR`,
//! `CLICOLOR_FORCE`, as anstream decides), then written directly, so the
//! hot output path never filters escape codes.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

/// Offsets and lengths.
pub const DIM: Style = Style::new().dimmed();
/// Errors and failures.
pub const ERROR: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
/// Skipped bytes, warnings.
pub const WARN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
/// Success.
pub const OK: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));

/// Whether colour goes to stdout.
pub fn stdout_colored() -> bool {
    anstream::AutoStream::choice(&io::stdout()) != anstream::ColorChoice::Never
}

/// Whether colour goes to stderr.
pub fn stderr_colored() -> bool {
    anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never
}

/// Writes `text` in `style` when `color`, plainly otherwise.
pub fn paint(w: &mut impl Write, color: bool, style: Style, text: &str) -> io::Result<()> {
    if color {
        write!(w, "{style}{text}{style:#}")
    } else {
        w.write_all(text.as_bytes())
    }
}

/// `beehive: error: MESSAGE` on an anstream stream (which drops the colour
/// where it does not belong).
pub fn write_error(w: &mut impl Write, message: &str) -> io::Result<()> {
    writeln!(w, "beehive: {ERROR}error:{ERROR:#} {message}")
}
