//! Words for a POSIX shell: the command lines `xfer fit` prints (and that a
//! user runs again by hand) and the values written into `xfer package`'s
//! `predict.sh`.

/// `s` as one word for a POSIX shell: single-quoted, a `'` inside written as
/// `'\''`. Nothing in it is expanded (`$(…)`, backticks, newlines stay text).
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `s` as one shell word: as it is when that is safe (letters, digits and
/// `-_./=:,+@%`), else [`quote`]d.
pub fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// `argv` as one shell command line, each argument a [`word`].
pub fn line(argv: &[String]) -> String {
    argv.iter().map(|a| word(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(word("a/b-c_d.h5"), "a/b-c_d.h5");
        assert_eq!(word("it's here"), "'it'\\''s here'");
        assert_eq!(word(""), "''");
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(
            line(&["xfer".into(), "fit".into(), "my photos".into()]),
            "xfer fit 'my photos'"
        );
    }
}
