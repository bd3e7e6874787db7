//! Quoting words for a POSIX shell, for the commands the CLI prints for people to paste.

use std::path::Path;

/// `word` as one shell word: as it is when it holds only characters no shell treats specially,
/// else in single quotes, each `'` written `'\''`.
pub(crate) fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A path as one shell word (a path that is not UTF-8 is shown with replacement characters).
pub(crate) fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(quote("cassettes/python/suite.json"), "cassettes/python/suite.json");
        assert_eq!(quote("openai=http://127.0.0.1:8080/v1"), "openai=http://127.0.0.1:8080/v1");
        assert_eq!(quote("my cassettes/a.json"), "'my cassettes/a.json'");
        assert_eq!(quote("$.messages[*].content"), "'$.messages[*].content'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a;rm -rf ~"), "'a;rm -rf ~'");
    }
}
