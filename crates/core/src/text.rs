//! Values echoed back in messages: a user's input (a flag, a line of a file, a
//! device name) may be megabytes long, and a message that repeats it whole buries
//! what it says. Each is cut to a readable length, saying how much was left out.

/// `s` whole when it has at most `max_chars` characters, else its start and end
/// with "… (N characters left out) …" between them.
pub fn shorten(s: &str, max_chars: usize) -> String {
    let count = s.chars().count();
    if count <= max_chars {
        return s.to_string();
    }
    let keep = max_chars.max(8);
    let head: String = s.chars().take(keep * 2 / 3).collect();
    let tail: String = s.chars().skip(count - (keep - keep * 2 / 3)).collect();
    format!(
        "{head}… ({} characters left out) …{tail}",
        count - head.chars().count() - tail.chars().count()
    )
}

/// The longest a value echoed in a message may be, in characters.
pub const ECHO_MAX_CHARS: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_keep_their_ends_and_say_what_was_cut() {
        assert_eq!(shorten("short", 10), "short");
        let long = format!("start{}end", "x".repeat(10_000));
        let s = shorten(&long, 60);
        assert!(s.starts_with("start") && s.ends_with("end"), "{s}");
        assert!(s.contains("characters left out"), "{s}");
        assert!(s.chars().count() < 120, "{s}");
        // characters, not bytes: a multi-byte value is cut on a character boundary
        let wide = "é".repeat(500);
        assert!(shorten(&wide, 50).contains("characters left out"));
    }
}
