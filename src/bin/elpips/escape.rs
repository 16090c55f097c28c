//! User text (pair names, paths, messages that quote them) inside the command line's outputs:
//! one escaping function per output format, so a name cannot end a line, start a workflow
//! command, break a table or inject markup. JSON outputs need none of these (serde escapes).
//!
//! - [`line`]: plain text lines (stdout, stderr; what CI logs read, where a line starting with
//!   `::` is a GitHub workflow command).
//! - [`markup`]: XML (the JUnit report) and HTML (the `--report` page).
//! - [`markdown`]: markdown text and table cells (`GITHUB_STEP_SUMMARY`).
//! - [`command_data`], [`command_property`]: the parts of a GitHub workflow command
//!   (`--annotations github`), as GitHub decodes them.

/// Characters that would break a line or reorder its text on a terminal: controls (line breaks,
/// escape sequences), Unicode line and paragraph separators, and bidirectional overrides.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text for one line of plain output: line breaks and other controls shown as escapes (`\n`,
/// `\u{1b}`), so the text stays on its line and a name cannot start one of its own.
pub fn line(s: &str) -> String {
    if !s.chars().any(breaks_a_line) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if breaks_a_line(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Text for XML and HTML (text and attribute values): the markup characters as entities, CR as a
/// character reference (a parser would turn a raw one into LF), and the characters XML 1.0
/// forbids even as references (other controls, U+FFFE, U+FFFF) as `?`.
pub fn markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c if !xml_char(c) => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// XML 1.0's `Char` production (surrogates cannot occur in a Rust string).
fn xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xFFFD | 0x10000..=0x10FFFF) && !(0x7F..=0x9F).contains(&(c as u32))
}

/// Text for markdown (GitHub's step summary), in a table cell or a heading: shown as written,
/// never as markup. HTML's characters become entities, every other ASCII punctuation character
/// is backslash-escaped (CommonMark lets any be; `|` must be, or it ends the cell), and line
/// breaks and other controls become spaces.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c if breaks_a_line(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A workflow command's message: `%`, CR and LF escaped as GitHub decodes them, other controls
/// dropped to spaces (the command is one line).
pub fn command_data(s: &str) -> String {
    let s = s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    s.chars().map(|c| if breaks_a_line(c) { ' ' } else { c }).collect()
}

/// A workflow command's property value: also `:` and `,`.
pub fn command_property(s: &str) -> String {
    command_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cannot_start_a_line_of_its_own() {
        let name = "x\n::error file=y::pwned\r\u{1b}[31m\u{2028}\u{202e}";
        let l = line(name);
        assert!(!l.chars().any(breaks_a_line), "{l}");
        assert_eq!(l, "x\\n::error file=y::pwned\\r\\u{1b}[31m\\u{2028}\\u{202e}");
        assert_eq!(line("plain name.png"), "plain name.png");
        let d = command_data(name);
        assert!(!d.contains('\n') && !d.contains('\r') && !d.contains('\u{1b}'), "{d}");
    }

    #[test]
    fn markup_is_well_formed_xml_for_any_text() {
        assert_eq!(markup("a<b>&\"c'\u{1}\u{fffe}\u{ffff}\n\r"), "a&lt;b&gt;&amp;&quot;c&apos;???\n&#13;");
        let all: String = (0..0x11000u32).filter_map(char::from_u32).collect();
        assert!(markup(&all).chars().all(|c| xml_char(c) && !"<>\"'".contains(c)));
    }

    #[test]
    fn markdown_shows_text_as_written() {
        assert_eq!(markdown("<b>x</b> | *y*\n[z](http://e)"), "&lt;b&gt;x&lt;\\/b&gt; \\| \\*y\\* \\[z\\]\\(http\\:\\/\\/e\\)");
        assert!(!markdown("a\nb\rc").contains(['\n', '\r']));
    }
}
