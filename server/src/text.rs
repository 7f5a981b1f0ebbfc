//! Text that people typed and others will see: names, notes, photo names.
//!
//! Control characters and Unicode format characters are dropped. The latter include the bidi
//! overrides and isolates (U+202A..U+202E, U+2066..U+2069) that make `"\u{202e}gpj.exe"` display
//! as `exe.jpg`, and the invisible joiners and marks that let two names look the same.

/// `raw` cleaned, trimmed, and cut to `max_chars` characters.
pub fn clean(raw: &str, max_chars: usize) -> String {
    raw.chars().filter(|c| shown(*c)).take(max_chars).collect::<String>().trim().to_owned()
}

fn shown(c: char) -> bool {
    !c.is_control() && !is_format(c)
}

/// Unicode general category Cf (format), plus the line and paragraph separators.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// A header value that may carry non-ASCII text: RFC 8187 (`UTF-8''Le%C3%B3n.jpg`), plain
/// percent-encoding, or plain ASCII. `None` when it is none of these.
pub fn decode_header(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let encoded = match value.split_once("''") {
        Some((charset, rest)) if charset.eq_ignore_ascii_case("utf-8") => rest,
        _ => value,
    };
    percent_encoding::percent_decode_str(encoded).decode_utf8().ok().map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_dropped() {
        assert_eq!(clean("\u{202e}gpj.exe", 100), "gpj.exe");
        assert_eq!(clean("A\u{2066}n\u{2069}a\u{200b}", 100), "Ana");
        assert_eq!(clean(" a\u{7}b ", 10), "ab");
        assert_eq!(clean("León", 3), "Leó");
    }

    #[test]
    fn header_text_is_decoded_from_rfc_8187_or_percent_encoding() {
        assert_eq!(decode_header(b"UTF-8''Le%C3%B3n.jpg").as_deref(), Some("León.jpg"));
        assert_eq!(decode_header(b"Le%C3%B3n.jpg").as_deref(), Some("León.jpg"));
        assert_eq!(decode_header(b"IMG_0001.jpg").as_deref(), Some("IMG_0001.jpg"));
        assert_eq!(decode_header(b"%FF%FE"), None);
    }
}
