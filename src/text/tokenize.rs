//! The caption tokenizer: the same tokens as Python's `re.findall(r"\w+", caption.lower())`, the
//! tokenizer of the tutorial this project reproduces.
//!
//! Python's `\w` on `str` matches a character when `ch.isalnum() or ch == "_"`, that is letters
//! (`L*`), numbers with a numeric value (`N*`: `²`, `½`, `Ⅻ`) and `_`. Rust's regex `\w` follows
//! Unicode's definition instead, which adds combining marks (`M*`), other connector punctuation and
//! the zero-width joiners, and drops `No` (`²`, `½`). So we spell Python's class out as
//! `[\p{L}\p{N}_]`: with it, `"cafe\u{301}"` (decomposed é) gives `["cafe"]` and `"x²"` gives
//! `["x²"]`, as in Python, where regex's `\w` would give `["café"]` and `["x"]`.
//!
//! Lower-casing: Rust's `str::to_lowercase` and Python's `str.lower()` both apply the full Unicode
//! mappings, including `İ` → `i̇` and the final-sigma rule. What can still differ is the Unicode
//! version (Python 3.11 ships 14.0; Rust's tables are newer) for characters assigned since.

use regex::Regex;
use std::sync::LazyLock;

static WORD: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: it compiles or the tests fail, so this cannot fail on user input.
    Regex::new(r"[\p{L}\p{N}_]+").expect("the word pattern is valid")
});

/// Splits a caption into lower-case word tokens, as `re.findall(r"\w+", s.lower())` does.
pub fn tokenize(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    WORD.find_iter(&lower)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    #[test]
    fn matches_python_on_ascii_and_punctuation() {
        assert_eq!(
            tokenize("A dog, running; on the GRASS ... it's 2 years-old!"),
            ["a", "dog", "running", "on", "the", "grass", "it", "s", "2", "years", "old"]
        );
        assert!(tokenize("  ... !? ").is_empty());
    }

    #[test]
    fn matches_python_on_non_ascii() {
        // Expected values printed by Python 3.11: re.findall(r"\w+", s.lower()).
        assert_eq!(tokenize("Café naïve 3_dogs"), ["café", "naïve", "3_dogs"]);
        assert_eq!(tokenize("cafe\u{301}"), ["cafe"]);
        assert_eq!(tokenize("x² ½ ①"), ["x²", "½", "①"]);
        assert_eq!(tokenize("İstanbul"), ["i", "stanbul"]);
        // Final sigma: Σ at the end of a word lowers to ς (U+03C2), in Python and in Rust.
        assert_eq!(tokenize("ΟΔΟΣ"), ["\u{3bf}\u{3b4}\u{3bf}\u{3c2}"]);
        assert_eq!(tokenize("a\u{200d}b tie\u{2040}x"), ["a", "b", "tie", "x"]);
        assert_eq!(tokenize("Ⅻ 一二 ß ﬁ"), ["ⅻ", "一二", "ß", "ﬁ"]);
    }
}
