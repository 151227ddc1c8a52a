//! Text that came from a message, made safe for a terminal or a log line.
//!
//! A message's provider ids, provider info, key ARNs, encryption context and bundle entry names are
//! chosen by whoever wrote the message. Printed raw, an ESC or CSI sequence in them could rewrite the
//! user's terminal, a newline could forge a log line, and a bidirectional override could make one name
//! read as another. Every such string reaches `Display` (and so stderr and logs) only through
//! [`Escaped`] or [`EscapedBytes`]: the error types format their fields with them, so forgetting to
//! escape is a change to one `#[error]` line, not a review finding in every call site. And an error
//! quotes at most [`QUOTED_MAX`] bytes of each such string, cut by [`clipped`], so that a message cannot
//! make an error line as long as its header.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// A string shown with every character that could act on a terminal or split a line replaced by a
/// visible escape: C0 and C1 controls and DEL (`\n`, `\r`, `\t`, `\u{1b}`, ...), the Unicode
/// bidirectional and invisible format characters, and the backslash itself (so the result is
/// unambiguous). Everything else, non-ASCII letters included, is shown as is.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            write_char(f, c)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Text shown on one line with controls and bidirectional characters escaped as [`Escaped`] does, but
/// backslashes left alone: for a line assembled from text that was already escaped (an [`Error`]'s
/// `Display`) and local text such as file names, so that nothing is escaped twice.
///
/// [`Error`]: crate::Error
#[derive(Clone, Copy)]
pub struct OneLine<'a>(pub &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_char(c)?,
                c => write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// Bytes shown as [`Escaped`] text where they are UTF-8, and as `\xNN` where they are not.
#[derive(Clone, Copy)]
pub struct EscapedBytes<'a>(pub &'a [u8]);

impl fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            Escaped(chunk.valid()).fmt(f)?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `s` escaped, as an owned string: for reasons that are assembled before they reach an error.
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

/// The most bytes of one string a message chose that an error quotes; [`clipped`] counts the rest.
pub const QUOTED_MAX: usize = 256;

/// At most [`QUOTED_MAX`] bytes of `text` (cut at a character boundary), then `… (N more bytes)`: how an
/// error quotes a string that a message chose (a provider id, provider info, an entry name, a rejected
/// ARN). Such a field may be 64 KiB, and a reason is written for each encrypted data key; escaped, the
/// whole of it would make an error line of megabytes. The result is still raw text, which the error's
/// `Display` shows through [`Escaped`] as it shows every field.
pub fn clipped(text: &str) -> Cow<'_, str> {
    if text.len() <= QUOTED_MAX {
        return Cow::Borrowed(text);
    }
    let end = (0..=QUOTED_MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    Cow::Owned(format!("{}… ({} more bytes)", &text[..end], text.len() - end))
}

fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32),
        c => f.write_char(c),
    }
}

/// Whether `c` is a control (C0, DEL, C1) or a format character that reorders or hides text: what
/// [`Escaped`] replaces. For output with escapes of its own (JSON), which must escape at least these.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                    // Arabic letter mark
            | '\u{200b}'..='\u{200f}'     // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}'     // line/paragraph separators, embeddings and overrides
            | '\u{2060}'..='\u{206f}'     // word joiner, invisible operators, isolates
            | '\u{feff}'                  // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}' // interlinear annotation
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        let hostile = "a\x1b[31mred\x07\r\nb\u{9b}c\u{202e}d\u{2066}e\\f\u{7f}";
        let shown = Escaped(hostile).to_string();
        assert_eq!(shown, "a\\u{1b}[31mred\\u{7}\\r\\nb\\u{9b}c\\u{202e}d\\u{2066}e\\\\f\\u{7f}");
        assert!(shown.chars().all(|c| !needs_escape(c)), "{shown}");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for s in ["arn:aws:kms:us-east-1:111122223333:key/abc", "Grüße, 東京", "a b", ""] {
            assert_eq!(Escaped(s).to_string(), s);
        }
    }

    #[test]
    fn one_line_escapes_controls_but_not_backslashes() {
        let shown = OneLine("already \\u{1b} escaped\n\x1b[2J").to_string();
        assert_eq!(shown, "already \\u{1b} escaped\\n\\u{1b}[2J");
    }

    #[test]
    fn clipped_keeps_short_text_and_counts_what_it_cuts() {
        let exact = "a".repeat(QUOTED_MAX);
        assert_eq!(clipped(&exact), exact.as_str());
        let long = format!("{}{}", "a".repeat(QUOTED_MAX - 1), "é".repeat(10));
        // The first "é" would straddle the limit: it goes whole, with the nine after it (20 bytes).
        assert_eq!(clipped(&long), format!("{}… (20 more bytes)", "a".repeat(QUOTED_MAX - 1)));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_hex() {
        assert_eq!(EscapedBytes(b"ok\xff\xfe\x1b").to_string(), "ok\\xff\\xfe\\u{1b}");
        assert_eq!(format!("{:?}", EscapedBytes(b"a\n")), "\"a\\n\"");
    }
}
