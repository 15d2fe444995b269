//! The report page: `page.html` (styles and the sorting/paging script) filled with the escaped
//! title, scores, loss curve and one table row per image.

use super::{thumb_name, ReportInput, Row, IMAGES_DIR};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("page.html");
/// Rows shown before the script runs: the template's default page size. The rest start hidden, so
/// the browser lays out one page, not all of them (a `<noscript>` style shows them all without
/// JavaScript).
const FIRST_PAGE: usize = 50;

/// `text` with the five HTML-significant characters replaced by entities, safe inside element
/// content and inside single- or double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills the template's `{{name}}` slots in one pass, so text inserted into one slot is never
/// searched for another (a caption reading "{{rows}}" stays a caption).
fn fill(template: &str, slot: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let name = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        match slot(name) {
            Some(text) => out.push_str(&text),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn scores_table(input: &ReportInput) -> String {
    let s = input.scores;
    let mut t = String::from("<table>\n");
    for (name, v) in s.named() {
        let _ = writeln!(t, "<tr><th scope=\"row\">{name}</th><td>{v:.4}</td></tr>");
    }
    let _ = writeln!(
        t,
        "<tr><th scope=\"row\">images</th><td>{}</td></tr>\n\
         <tr><th scope=\"row\">decoding</th><td>{}</td></tr>",
        s.images,
        escape(&input.decoding)
    );
    t.push_str("</table>");
    t
}

fn loss_section(file: Option<&str>) -> String {
    match file {
        Some(file) => format!(
            "<section id=\"loss\" class=\"card\" aria-labelledby=\"loss-h\">\n\
             <h2 id=\"loss-h\" style=\"margin-top:0\">Loss per epoch</h2>\n\
             <img src=\"{}\" width=\"640\" height=\"400\" alt=\"train and validation loss per epoch\">\n\
             </section>",
            escape(file)
        ),
        None => String::new(),
    }
}

/// A score's class: the bottom and top of CIDEr-D's usual range get a colour.
fn grade(cider: f64) -> &'static str {
    if cider < 0.5 {
        " low"
    } else if cider >= 1.5 {
        " high"
    } else {
        ""
    }
}

fn row_html(out: &mut String, rank: usize, row: &Row) {
    let im = row.image;
    let name = escape(&im.name);
    let _ = write!(
        out,
        "<tr data-name=\"{name}\" data-cider=\"{:.6}\" data-bleu4=\"{:.6}\"{}>\
         <td class=\"rank\">{rank}</td><td class=\"pic\">",
        finite(row.cider),
        finite(row.bleu4),
        if rank > FIRST_PAGE { " hidden" } else { "" }
    );
    match row.thumbnail {
        Some((w, h)) => {
            let _ = write!(
                out,
                "<img src=\"{IMAGES_DIR}/{}\" width=\"{w}\" height=\"{h}\" loading=\"lazy\" \
                 decoding=\"async\" alt=\"{name}\">",
                thumb_name(row.n)
            );
        }
        None => out.push_str("<div class=\"missing\">image unavailable</div>"),
    }
    let _ = write!(
        out,
        "<div class=\"file\">{name}</div></td><td><p class=\"hyp\">{}</p><ol class=\"refs\">",
        escape(&im.caption)
    );
    for r in &im.references {
        let _ = write!(out, "<li>{}</li>", escape(r));
    }
    let _ = writeln!(
        out,
        "</ol></td><td class=\"num{}\">{:.3}</td><td class=\"num\">{:.3}</td></tr>",
        grade(row.cider),
        row.cider,
        row.bleu4
    );
}

/// NaN would sort unpredictably in the page's script; a score that is not finite sorts as 0.
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The whole page for `rows` (already in display order); `loss` is the loss curve's file name in
/// the report folder.
pub(super) fn page(input: &ReportInput, rows: &[Row], loss: Option<&str>) -> String {
    let meta = format!(
        "{} images, {} decoding; sorted by CIDEr-D, worst first (click a column to sort)",
        rows.len(),
        input.decoding
    );
    fill(TEMPLATE, |slot| match slot {
        "title" => Some(escape(&input.title)),
        "meta" => Some(escape(&meta)),
        "scores" => Some(scores_table(input)),
        "loss" => Some(loss_section(loss)),
        "rows" => {
            let mut out = String::with_capacity(rows.len() * 600);
            for (i, row) in rows.iter().enumerate() {
                row_html(&mut out, i + 1, row);
            }
            Some(out)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<b a="1" c='2'>&amp;</b>"#),
            "&lt;b a=&quot;1&quot; c=&#39;2&#39;&gt;&amp;amp;&lt;/b&gt;"
        );
        assert_eq!(escape("un chien été"), "un chien été");
    }

    #[test]
    fn fill_does_not_look_inside_inserted_text() {
        let out = fill("<{{a}}|{{b}}|{{c}}>", |s| match s {
            "a" => Some("{{b}}".into()),
            "b" => Some("B".into()),
            _ => None,
        });
        assert_eq!(out, "<{{b}}|B|{{c}}>");
    }

    #[test]
    fn the_template_has_every_slot() {
        for slot in [
            "{{title}}",
            "{{meta}}",
            "{{scores}}",
            "{{loss}}",
            "{{rows}}",
        ] {
            assert!(TEMPLATE.contains(slot), "{slot}");
        }
        let default_page = format!("<option value=\"{FIRST_PAGE}\" selected>");
        assert!(
            TEMPLATE.contains(&default_page),
            "the first page is not the default page size"
        );
    }
}
