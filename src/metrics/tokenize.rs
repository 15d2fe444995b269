//! PTB-style tokenization as coco-caption does it before scoring: Stanford CoreNLP 3.4.1's
//! `PTBTokenizer -preserveLines -lowerCase`, then removal of its punctuation tokens.
//!
//! This is a hand-written emulation for plain captions, checked token for token against the real
//! tokenizer on the fixtures in `tests/fixtures/metrics/` (see `tests/metrics.rs`). What it does
//! as CoreNLP does: lower-casing; splitting off `, ; : ! ? . " ( ) [ ] { } $ % & * + = < >`;
//! grouping `...`, `!!`, `?!`, `--`; keeping hyphenated words (`t-shirt`), signed numbers,
//! decimals and thousands (`-5`, `3.5`, `1,000`), times (`5:30`, but `12:30 pm`), slashes
//! (`a/b`), letter acronyms (`u.s.`, `p.m.`), single-letter initials (`j.`) and CoreNLP's
//! abbreviations (`st.`, `mr.`, `etc.`; `no.`, `ca.` only before a number) with their period;
//! splitting contractions (`ca n't`, `do n't`, `it 's`, `we 'd 've`, `can not`, `gon na`);
//! writing brackets as `-lrb-` `-rrb-` `-lsb-` `-rsb-` `-lcb-` `-rcb-`, which coco-caption
//! KEEPS because its punctuation list names them in upper case only; mapping curly quotes, `…`,
//! en/em dashes and `½ ¼ ¾` as CoreNLP does.
//!
//! Known differences from CoreNLP (none occur in ordinary captions): URLs, e-mail addresses and
//! emoticons (`:)` is CoreNLP's `:-rrb-`) are not recognised as single tokens; an abbreviation
//! glued to a number (`no.5`, CoreNLP `no. 5`) is kept whole; CoreNLP's abbreviation rules are
//! longer and partly case-sensitive, this emulation keeps the common ones, case-insensitive;
//! rare forms such as `rock'n'roll`, `y'all` and `'n'` are not split the way CoreNLP splits
//! them; CoreNLP's normalisation of other Unicode symbols (e.g. `&amp;`, soft hyphens) is not
//! reproduced.

/// Tokens that coco-caption's `ptbtokenizer.py` removes after tokenizing (its `PUNCTUATIONS`).
/// `-LRB-` and friends are in upper case there, so after `-lowerCase` they are never removed.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Words that keep their final period (CoreNLP's abbreviation lists, the ones a caption may hold).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "st", "ste", "mt", "vs", "etc", "ft", "bldg",
    "jr", "sr", "co", "cos", "inc", "ltd", "corp", "ave", "blvd", "rd", "gen", "col", "lt", "sgt",
    "capt", "rev", "maj", "gov", "govs", "sen", "sens", "rep", "reps", "hon", "pres", "messrs",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon",
    "tue", "tues", "wed", "thu", "thurs", "fri", "al", "dept", "univ", "est", "cf",
];

/// Words that keep their final period only before a number (`no. 5`, but `there is no .`).
const NUMBER_ABBREVIATIONS: &[&str] = &[
    "no", "nos", "ca", "fig", "figs", "vol", "vols", "art", "pp", "op", "prop",
];

/// Contraction suffixes CoreNLP splits off a word (longest first).
const CLITICS: &[&str] = &["n't", "'ll", "'re", "'ve", "'s", "'m", "'d"];

/// Whole words CoreNLP splits in two.
const SPLIT_WORDS: &[(&str, &str, &str)] = &[
    ("cannot", "can", "not"),
    ("gonna", "gon", "na"),
    ("wanna", "wan", "na"),
    ("gotta", "got", "ta"),
    ("lemme", "lem", "me"),
    ("gimme", "gim", "me"),
    ("'tis", "'t", "is"),
    ("'twas", "'t", "was"),
];

/// Tokenizes one caption as coco-caption's PTBTokenizer does, punctuation tokens removed.
pub fn ptb_tokenize(caption: &str) -> Vec<String> {
    ptb_tokens(caption)
        .into_iter()
        .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
        .collect()
}

/// All PTB tokens of `caption`, lower-cased, punctuation included.
pub fn ptb_tokens(caption: &str) -> Vec<String> {
    let text = normalize(&caption.to_lowercase());
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if starts_word(&chars, i) {
            i = lex_word(&chars, i, &mut out);
        } else {
            i = lex_symbol(&chars, i, &mut out);
        }
    }
    out
}

/// Maps the Unicode punctuation CoreNLP normalises onto its ASCII spelling.
fn normalize(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' => s.push('"'),
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => s.push('\''),
            '\u{2026}' => s.push_str("..."),
            '\u{2013}' | '\u{2014}' | '\u{2015}' => s.push_str(" -- "),
            '\u{00BD}' => s.push_str("1/2"),
            '\u{00BC}' => s.push_str("1/4"),
            '\u{00BE}' => s.push_str("3/4"),
            '\u{00A0}' => s.push(' '),
            _ => s.push(c),
        }
    }
    s
}

fn is_alnum(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric())
}

/// A word starts at a letter or digit, at `#` before a letter (`#tag`, but `# 23`), at `@`
/// before a letter or digit, at `'` before a kept clitic form
/// (`'s`, `'70s`, `'em`, `'tis`), or at `.`, or at a sign after a space, before a digit.
fn starts_word(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    let next = chars.get(i + 1);
    match c {
        _ if c.is_alphanumeric() => true,
        '#' => next.is_some_and(|n| n.is_alphabetic()),
        '@' => is_alnum(next),
        '.' => next.is_some_and(|n| n.is_ascii_digit()),
        // A sign starts a number after a space (`-5`, `+5`), not inside a word (`a-5`).
        '-' | '+' => {
            next.is_some_and(|n| n.is_ascii_digit()) && (i == 0 || chars[i - 1].is_whitespace())
        }
        '\'' => {
            let rest: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            matches!(
                rest.as_str(),
                "s" | "em" | "tis" | "twas" | "ll" | "re" | "ve" | "m" | "d"
            ) || (rest.ends_with('s')
                && rest.len() > 1
                && rest[..rest.len() - 1].chars().all(|c| c.is_ascii_digit()))
        }
        _ => false,
    }
}

/// Reads a word starting at `i`, pushes its token(s) and returns the index after it.
fn lex_word(chars: &[char], start: usize, out: &mut Vec<String>) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        let prev = chars[i - 1];
        let next = chars.get(i + 1);
        let joins = c.is_alphanumeric()
            // Hyphen, period, slash, underscore and @ join two word parts (t-shirt, u.s, a/b);
            // an apostrophe joins letters (o'clock); comma and colon join digits (1,000; 5:30).
            || (matches!(c, '-' | '.' | '/' | '_' | '@') && prev.is_alphanumeric() && is_alnum(next))
            || (c == '\'' && prev.is_alphabetic() && next.is_some_and(|n| n.is_alphabetic()))
            || (matches!(c, ',' | ':')
                && prev.is_ascii_digit()
                && next.is_some_and(|n| n.is_ascii_digit()));
        // A time ends before letters: `12:30pm` is `12:30 pm`.
        let time_suffix =
            c.is_alphabetic() && prev.is_ascii_digit() && chars[start..i].contains(&':');
        if !joins || time_suffix {
            break;
        }
        i += 1;
    }
    let mut word: String = chars[start..i].iter().collect();
    // A final period stays on acronyms, initials and known abbreviations (even before more
    // dots: `u.s..` is `u.s. .`), and on any word before , ; : (`dog.,` is `dog. ,`).
    if chars.get(i) == Some(&'.') {
        let after = chars.get(i + 1);
        let number_follows = chars[i + 1..]
            .iter()
            .find(|c| !c.is_whitespace())
            .is_some_and(|c| c.is_ascii_digit());
        if is_abbreviation(&word)
            || (number_follows && NUMBER_ABBREVIATIONS.contains(&word.as_str()))
            || matches!(after, Some(',' | ';' | ':'))
        {
            word.push('.');
            i += 1;
        }
    }
    push_word(word, out);
    i
}

/// Acronyms made of single letters and periods (`u.s`, `p.m`), single letters and listed words.
fn is_abbreviation(word: &str) -> bool {
    let acronym = word
        .split('.')
        .all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic));
    acronym || ABBREVIATIONS.contains(&word)
}

/// Pushes a word, splitting contractions and the words CoreNLP divides.
fn push_word(word: String, out: &mut Vec<String>) {
    if let Some((_, a, b)) = SPLIT_WORDS.iter().find(|(w, _, _)| *w == word) {
        out.push((*a).to_string());
        out.push((*b).to_string());
        return;
    }
    for clitic in CLITICS {
        if let Some(stem) = word.strip_suffix(clitic) {
            if !stem.is_empty() && !stem.ends_with('\'') {
                push_word(stem.to_string(), out);
                out.push((*clitic).to_string());
                return;
            }
        }
    }
    out.push(word);
}

/// Reads a punctuation or symbol token starting at `i`; returns the index after it.
fn lex_symbol(chars: &[char], start: usize, out: &mut Vec<String>) -> usize {
    let c = chars[start];
    let run = chars[start..].iter().take_while(|&&x| x == c).count();
    let (token, len): (String, usize) = match c {
        '.' if run >= 3 => ("...".into(), 3),
        '-' if run >= 2 => ("--".into(), run),
        '!' | '?' => {
            let n = chars[start..]
                .iter()
                .take_while(|x| matches!(x, '!' | '?'))
                .count();
            (chars[start..start + n].iter().collect(), n)
        }
        '(' => ("-lrb-".into(), 1),
        ')' => ("-rrb-".into(), 1),
        '[' => ("-lsb-".into(), 1),
        ']' => ("-rsb-".into(), 1),
        '{' => ("-lcb-".into(), 1),
        '}' => ("-rcb-".into(), 1),
        '"' => ("''".into(), 1),
        '`' if run >= 2 => ("``".into(), 2),
        _ => (c.to_string(), 1),
    };
    out.push(token);
    start + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> String {
        ptb_tokenize(s).join(" ")
    }

    #[test]
    fn lowercases_and_drops_punctuation() {
        assert_eq!(
            tok("A Dog, running on the BEACH!"),
            "a dog running on the beach"
        );
        assert_eq!(tok("... - -- ; : ? ! \" ' `"), "");
    }

    #[test]
    fn splits_contractions_like_ptb() {
        assert_eq!(tok("A man's dog can't swim."), "a man 's dog ca n't swim");
        assert_eq!(tok("we'd've done it, cannot"), "we 'd 've done it can not");
        assert_eq!(tok("dogs' toys"), "dogs toys");
    }

    #[test]
    fn keeps_brackets_abbreviations_and_numbers() {
        assert_eq!(tok("(blurry) photo"), "-lrb- blurry -rrb- photo");
        assert_eq!(
            tok("St. Mary at 5:30 p.m. costs $3.50"),
            "st. mary at 5:30 p.m. costs $ 3.50"
        );
        assert_eq!(
            tok("a t-shirt. 1,000 dogs!! wow?!"),
            "a t-shirt 1,000 dogs !! wow ?!"
        );
    }
}
