//! Five true captions of a [`Scene`], one from each of five template families, with a few
//! synonyms. Every family states colour and shape; the facts a model reads easily from a global image
//! feature (colour, shape, count, background) come first, positions later. The vocabulary stays
//! under a hundred words so that a small model can learn it in minutes.

use super::scene::{pick, Layout, Object, Position, Relation, Scene, Size};
use rand::seq::SliceRandom;
use rand::Rng;

/// The five captions of `scene`, Flickr style ("A red circle on a blue background ."), in random order.
pub fn captions(scene: &Scene, rng: &mut impl Rng) -> [String; 5] {
    let bg = scene.background.name();
    let mut out = match scene.layout {
        Layout::Single { size, position } => single(&scene.objects[0], size, position, bg, rng),
        Layout::Row { count, size } => row(&scene.objects[0], count, size, bg, rng),
        Layout::Pair { relation } => pair(&scene.objects[0], &scene.objects[1], relation, bg),
    };
    out.shuffle(rng);
    out.map(|words| finish(&words))
}

fn single(o: &Object, size: Size, position: Position, bg: &str, rng: &mut impl Rng) -> [String; 5] {
    let (c, s) = (o.colour.name(), o.shape.name());
    let place = match position {
        Position::Center => pick(rng, &["in the middle", "in the center"]),
        Position::Left => "on the left",
        Position::Right => "on the right",
        Position::Top => "at the top",
        Position::Bottom => "at the bottom",
    };
    [
        format!("{} {c} {s} on a {bg} background", a(size_word(size, rng))),
        format!("{} {s} {place} of the {}", a(c), picture(rng)),
        format!("there is {} {c} {s} {place}", a(size_word(size, rng))),
        format!("{} {} with {} {s}", a(bg), picture(rng), a(c)),
        format!(
            "one {} {c} {s} against {} background",
            size_word(size, rng),
            a(bg)
        ),
    ]
}

fn row(o: &Object, count: usize, size: Size, bg: &str, rng: &mut impl Rng) -> [String; 5] {
    let (c, ss) = (o.colour.name(), o.shape.plural());
    let n = if count == 2 { "two" } else { "three" };
    let group = if count == 2 {
        "a pair of"
    } else {
        "a group of three"
    };
    [
        format!("{n} {} {c} {ss} on a {bg} background", size_word(size, rng)),
        format!("there are {n} {c} {ss} in the {}", picture(rng)),
        format!("{} background with {n} {c} {ss}", a(bg)),
        format!("{group} {c} {ss} on {} background", a(bg)),
        format!("{n} {} {c} {ss} in a row", size_word(size, rng)),
    ]
}

fn pair(first: &Object, second: &Object, relation: Relation, bg: &str) -> [String; 5] {
    let one = format!("{} {}", a(first.colour.name()), first.shape.name());
    let two = format!("{} {}", a(second.colour.name()), second.shape.name());
    match relation {
        Relation::Beside => [
            format!("{one} and {two} on a {bg} background"),
            format!("{one} next to {two}"),
            format!("{one} on the left and {two} on the right"),
            format!("there is {one} to the left of {two}"),
            format!("on a {bg} background , {one} beside {two}"),
        ],
        Relation::Above => [
            format!("{one} and {two} on a {bg} background"),
            format!("{one} above {two}"),
            format!("{one} at the top and {two} at the bottom"),
            format!("there is {two} below {one}"),
            format!("on a {bg} background , {one} over {two}"),
        ],
    }
}

fn size_word(size: Size, rng: &mut impl Rng) -> &'static str {
    match size {
        Size::Small => pick(rng, &["small", "little"]),
        Size::Large => pick(rng, &["large", "big"]),
    }
}

fn picture(rng: &mut impl Rng) -> &'static str {
    pick(rng, &["picture", "image"])
}

/// `word` with its indefinite article.
fn a(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}

/// Capitalises the first letter and ends with " ." as Flickr8k captions do.
fn finish(words: &str) -> String {
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => format!("{}{} .", first.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::data::synth::scene::{Colour, Shape};
    use crate::data::synth::{sample, Layout, Position, Relation, Size};

    fn words(c: &str) -> Vec<String> {
        crate::data::synth::write::words(c).collect()
    }

    #[test]
    fn every_caption_is_true_of_its_scene() {
        for i in 0..3000 {
            let s = sample(11, i);
            let scene = &s.scene;
            let allowed_colours: Vec<&str> = std::iter::once(scene.background)
                .chain(scene.objects.iter().map(|o| o.colour))
                .map(Colour::name)
                .collect();
            for cap in &s.captions {
                let w = words(cap);
                let has = |x: &str| w.iter().any(|y| y == x);
                assert!(cap.starts_with(|c: char| c.is_ascii_uppercase()) && cap.ends_with(" ."));
                assert!((5..=15).contains(&w.len()), "{cap}");
                for c in Colour::ALL {
                    if has(c.name()) {
                        assert!(allowed_colours.contains(&c.name()), "{cap} / {scene:?}");
                    }
                }
                for sh in Shape::ALL {
                    if has(sh.name()) || has(sh.plural()) {
                        assert!(scene.objects.iter().any(|o| o.shape == sh), "{cap}");
                    }
                }
                for o in &scene.objects {
                    assert!(has(o.colour.name()), "{cap} lacks {:?}", o.colour);
                }
                match scene.layout {
                    Layout::Single { size, position } => {
                        assert!(has(scene.objects[0].shape.name()), "{cap}");
                        let wrong_size: &[&str] = match size {
                            Size::Small => &["large", "big"],
                            Size::Large => &["small", "little"],
                        };
                        assert!(!wrong_size.iter().any(|x| has(x)), "{cap}");
                        let place = match position {
                            Position::Center => ["middle", "center"],
                            Position::Left => ["left", "left"],
                            Position::Right => ["right", "right"],
                            Position::Top => ["top", "top"],
                            Position::Bottom => ["bottom", "bottom"],
                        };
                        for p in ["middle", "center", "left", "right", "top", "bottom"] {
                            assert!(!has(p) || place.contains(&p), "{cap} / {position:?}");
                        }
                        assert!(!has("two") && !has("three") && !has("and"), "{cap}");
                    }
                    Layout::Row { count, size } => {
                        assert!(has(scene.objects[0].shape.plural()), "{cap}");
                        let n = if count == 2 { "two" } else { "three" };
                        assert!(has(n) || (count == 2 && has("pair")), "{cap}");
                        assert!(!has(if count == 2 { "three" } else { "two" }), "{cap}");
                        let wrong: &[&str] = match size {
                            Size::Small => &["large", "big"],
                            Size::Large => &["small", "little"],
                        };
                        assert!(!wrong.iter().any(|x| has(x)), "{cap}");
                    }
                    Layout::Pair { relation } => {
                        let (a, b) = (&scene.objects[0], &scene.objects[1]);
                        let one = format!("{} {}", a.colour.name(), a.shape.name());
                        let two = format!("{} {}", b.colour.name(), b.shape.name());
                        let lower = cap.to_lowercase();
                        assert!(lower.contains(&one) && lower.contains(&two), "{cap}");
                        let wrong: &[&str] = match relation {
                            Relation::Beside => &["above", "below", "over", "top", "bottom"],
                            Relation::Above => &["left", "right", "beside", "next"],
                        };
                        assert!(!wrong.iter().any(|x| has(x)), "{cap}");
                        // The first-named object of "X left of / above Y" is objects[0].
                        if has("left") || has("above") || has("over") {
                            assert!(lower.find(&one) < lower.find(&two), "{cap}");
                        }
                        if has("below") {
                            assert!(lower.find(&two) < lower.find(&one), "{cap}");
                        }
                    }
                }
            }
            let distinct: std::collections::BTreeSet<_> = s.captions.iter().collect();
            assert_eq!(distinct.len(), 5, "{:?}", s.captions);
        }
    }

    #[test]
    fn articles_agree_with_the_next_word() {
        for i in 0..2000 {
            for cap in sample(5, i).captions {
                let w = words(&cap);
                for pair in w.windows(2) {
                    let vowel = pair[1].starts_with(['a', 'e', 'i', 'o', 'u']);
                    if pair[0] == "a" {
                        assert!(!vowel, "{cap}");
                    }
                    if pair[0] == "an" {
                        assert!(vowel, "{cap}");
                    }
                }
            }
        }
    }
}
