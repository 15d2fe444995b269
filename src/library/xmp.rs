//! XMP sidecars: the caption as `dc:description` (language alternative, `x-default`) and the model
//! in captioner's namespace, merged into an existing sidecar with every other property kept.
//!
//! The merge streams the sidecar through quick-xml's namespace-aware reader: properties are found
//! by namespace URI, not prefix; `dc:description` and `captioner:*` are dropped wherever they are
//! and written again in the first `rdf:Description`; everything else is copied event by event.

use crate::{Error, Result};
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::Writer;
use std::path::{Path, PathBuf};

/// RDF's namespace.
pub const RDF_NS: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// Dublin Core's namespace (`dc:description`).
pub const DC_NS: &str = "http://purl.org/dc/elements/1.1/";
/// captioner's namespace: `captioner:model` (sha256 of the model) and `captioner:modelName`.
pub const CAPTIONER_NS: &str = "http://ns.captioner.dev/xmp/1.0/";
/// The `xml:` namespace (for `xml:lang`).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// What a new sidecar starts from.
const EMPTY_PACKET: &str = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"captioner\">\n \
<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  \
<rdf:Description rdf:about=\"\"/>\n \
</rdf:RDF>\n\
</x:xmpmeta>\n\
<?xpacket end=\"w\"?>\n";

/// How a sidecar is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SidecarName {
    /// `photo.jpg` → `photo.xmp`: ExifTool's and Lightroom's name, which digiKam reads.
    #[default]
    Base,
    /// `photo.jpg` → `photo.jpg.xmp`: darktable's (and digiKam's own) name.
    Full,
}

/// What captioner writes into a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmpCaption {
    /// The caption (`dc:description`, x-default).
    pub caption: String,
    /// sha256 of the model (`captioner:model`).
    pub model: String,
    /// The model's file name (`captioner:modelName`).
    pub model_name: String,
}

/// The sidecar of `image` under `name`.
pub fn sidecar_path(image: &Path, name: SidecarName) -> PathBuf {
    match name {
        SidecarName::Base => image.with_extension("xmp"),
        SidecarName::Full => {
            let mut s = image.as_os_str().to_os_string();
            s.push(".xmp");
            PathBuf::from(s)
        }
    }
}

/// Writes `value` into the sidecar at `path` (atomically), creating it or merging into the one
/// there. Returns false, writing nothing, when the sidecar already says the same. A sidecar that
/// is not XMP is left alone and reported.
pub fn write_sidecar(path: &Path, value: &XmpCaption) -> Result<bool> {
    let existing = match std::fs::read(path) {
        Ok(bytes) => Some(
            String::from_utf8(bytes)
                .map_err(|_| Error::format(path, "XMP sidecar is not UTF-8; left as it is"))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, e)),
    };
    let text = existing.as_deref().unwrap_or(EMPTY_PACKET);
    if existing.is_some() {
        let current = read_sidecar(text).map_err(|m| Error::format(path, m))?;
        if current.description.as_deref() == Some(value.caption.as_str())
            && current.model.as_deref() == Some(value.model.as_str())
        {
            return Ok(false);
        }
    }
    let merged = merge(text, value).map_err(|m| Error::format(path, m))?;
    crate::fsutil::write_atomic(path, merged.as_bytes())?;
    Ok(true)
}

/// What a sidecar says that captioner cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarValues {
    /// `dc:description`, x-default (or the first language when there is no x-default).
    pub description: Option<String>,
    /// `captioner:model`.
    pub model: Option<String>,
}

fn is(ns: &ResolveResult, uri: &str) -> bool {
    matches!(ns, ResolveResult::Bound(Namespace(n)) if *n == uri)
}

/// Text of a Text or reference event, unescaped.
fn text_of(event: &Event) -> std::result::Result<String, String> {
    match event {
        Event::Text(t) => Ok(t.xml10_content().into_owned()),
        Event::CData(c) => Ok(c.to_string()),
        Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
            Some(c) => Ok(c.to_string()),
            None => quick_xml::escape::unescape(&format!("&{};", &**r))
                .map(|s| s.into_owned())
                .map_err(|e| e.to_string()),
        },
        _ => Ok(String::new()),
    }
}

/// Reads `dc:description` and `captioner:model` from a sidecar's text.
pub fn read_sidecar(text: &str) -> std::result::Result<SidecarValues, String> {
    let mut reader = NsReader::from_str(text);
    let mut values = SidecarValues::default();
    // Which property's text is being read: the description's language item, or the model.
    let mut in_description = false;
    let mut li: Option<(bool, String)> = None; // (x-default, text so far)
    let mut in_model: Option<String> = None;
    let mut first_lang: Option<String> = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        let ns = Ns::of(&ns);
        match &event {
            Event::Start(e) => {
                let local = e.local_name();
                if ns == Ns::Dc && local.as_ref() == "description" {
                    in_description = true;
                } else if in_description && ns == Ns::Rdf && local.as_ref() == "li" {
                    let default = e.attributes().flatten().any(|a| {
                        let (ans, alocal) = reader.resolver().resolve_attribute(a.key);
                        is(&ans, XML_NS)
                            && alocal.as_ref() == "lang"
                            && a.value.as_ref() == "x-default"
                    });
                    li = Some((default, String::new()));
                } else if ns == Ns::Captioner && local.as_ref() == "model" {
                    in_model = Some(String::new());
                }
            }
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                let t = text_of(&event)?;
                if let Some((_, s)) = li.as_mut() {
                    s.push_str(&t);
                } else if let Some(s) = in_model.as_mut() {
                    s.push_str(&t);
                }
            }
            Event::End(e) => {
                let local = e.local_name();
                if ns == Ns::Rdf && local.as_ref() == "li" {
                    if let Some((default, s)) = li.take() {
                        if default {
                            values.description = Some(s);
                        } else {
                            first_lang.get_or_insert(s);
                        }
                    }
                } else if ns == Ns::Dc && local.as_ref() == "description" {
                    in_description = false;
                } else if ns == Ns::Captioner && local.as_ref() == "model" {
                    values.model = in_model.take();
                }
            }
            Event::Empty(e) => {
                // `<rdf:Description captioner:model="..."/>`: the attribute form.
                for a in e.attributes().flatten() {
                    let (ans, alocal) = reader.resolver().resolve_attribute(a.key);
                    if is(&ans, CAPTIONER_NS) && alocal.as_ref() == "model" {
                        values.model = Some(a.value.to_string());
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if values.description.is_none() {
        values.description = first_lang;
    }
    Ok(values)
}

/// The namespaces the merge tells apart, resolved at once so the reader can be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Rdf,
    Dc,
    Captioner,
    Other,
}

impl Ns {
    fn of(ns: &ResolveResult) -> Ns {
        if is(ns, RDF_NS) {
            Ns::Rdf
        } else if is(ns, DC_NS) {
            Ns::Dc
        } else if is(ns, CAPTIONER_NS) {
            Ns::Captioner
        } else {
            Ns::Other
        }
    }
}

/// The sidecar text `text` with captioner's properties set to `value` and all others kept.
pub fn merge(text: &str, value: &XmpCaption) -> std::result::Result<String, String> {
    let mut reader = NsReader::from_str(text);
    let mut writer = Writer::new(Vec::new());
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    // Element stack: (is rdf:RDF, is rdf:Description).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    // Depth at which a dropped property's subtree ends.
    let mut skipping: Option<usize> = None;
    let mut written = false;
    let mut saw_rdf = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        let ns = Ns::of(&ns);
        if let Some(depth) = skipping {
            match &event {
                Event::Start(_) => stack.push((false, false)),
                Event::End(_) => {
                    stack.pop();
                    if stack.len() == depth {
                        skipping = None;
                    }
                }
                Event::Eof => return Err("the XML ends inside an element".into()),
                _ => {}
            }
            continue;
        }
        let parent_is_description = stack.last().is_some_and(|s| s.1);
        let parent_is_rdf = stack.last().is_some_and(|s| s.0);
        let ours = match &event {
            Event::Start(e) | Event::Empty(e) => {
                parent_is_description && is_ours(ns, e.local_name().as_ref())
            }
            _ => false,
        };
        if ours {
            // A property captioner owns: dropped here, written again at the Description's end.
            if matches!(event, Event::Start(_)) {
                skipping = Some(stack.len());
                stack.push((false, false));
            }
            continue;
        }
        match event {
            Event::Start(e) => {
                let local = e.local_name();
                let is_rdf = ns == Ns::Rdf && local.as_ref() == "RDF";
                let is_desc = parent_is_rdf && ns == Ns::Rdf && local.as_ref() == "Description";
                saw_rdf |= is_rdf;
                if is_desc {
                    w(writer.write_event(Event::Start(description_start(&reader, &e, !written)?)))?;
                } else {
                    w(writer.write_event(Event::Start(e)))?;
                }
                stack.push((is_rdf, is_desc));
            }
            Event::Empty(e) => {
                let local = e.local_name();
                let is_desc = parent_is_rdf && ns == Ns::Rdf && local.as_ref() == "Description";
                if is_desc {
                    let start = description_start(&reader, &e, !written)?;
                    let end = start.to_end().into_owned();
                    w(writer.write_event(Event::Start(start)))?;
                    if !written {
                        write_properties(&mut writer, value)?;
                        written = true;
                    }
                    w(writer.write_event(Event::End(end)))?;
                } else {
                    w(writer.write_event(Event::Empty(e)))?;
                }
            }
            Event::End(e) => {
                let (is_rdf, is_desc) = stack.pop().unwrap_or((false, false));
                if is_desc && !written {
                    write_properties(&mut writer, value)?;
                    written = true;
                }
                if is_rdf && !written {
                    // An RDF without a Description: add one.
                    let start = new_description();
                    let end = start.to_end().into_owned();
                    w(writer.write_event(Event::Start(start)))?;
                    write_properties(&mut writer, value)?;
                    w(writer.write_event(Event::End(end)))?;
                    written = true;
                }
                w(writer.write_event(Event::End(e)))?;
            }
            Event::Eof => break,
            other => w(writer.write_event(other))?,
        }
    }
    if !saw_rdf || !written {
        return Err("not an XMP packet (no rdf:RDF element); left as it is".into());
    }
    String::from_utf8(writer.into_inner()).map_err(|e| e.to_string())
}

fn is_ours(ns: Ns, local: &str) -> bool {
    (ns == Ns::Dc && local == "description") || ns == Ns::Captioner
}

fn new_description() -> BytesStart<'static> {
    let mut start = BytesStart::new("rdf:Description");
    start.push_attribute(("rdf:about", ""));
    start.push_attribute(("xmlns:dc", DC_NS));
    start.push_attribute(("xmlns:captioner", CAPTIONER_NS));
    start
}

/// An `rdf:Description` start tag with captioner's attributes dropped, and (for the one that gets
/// the properties) the `dc` and `captioner` prefixes declared.
fn description_start<'a>(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'a>,
    declare: bool,
) -> std::result::Result<BytesStart<'static>, String> {
    let name = e.name().as_ref().to_string();
    let mut start = BytesStart::new(name);
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let key = a.key.as_ref();
        let (ans, alocal) = reader.resolver().resolve_attribute(a.key);
        if is(&ans, CAPTIONER_NS) || (is(&ans, DC_NS) && alocal.as_ref() == "description") {
            continue;
        }
        if declare && (key == "xmlns:dc" || key == "xmlns:captioner") {
            let ours = if key == "xmlns:dc" {
                DC_NS
            } else {
                CAPTIONER_NS
            };
            if a.value.as_ref() != ours {
                return Err(format!(
                    "the prefix {} is bound to {}, not {ours}; left as it is",
                    key, a.value
                ));
            }
            continue;
        }
        start.push_attribute(a);
    }
    if declare {
        start.push_attribute(("xmlns:dc", DC_NS));
        start.push_attribute(("xmlns:captioner", CAPTIONER_NS));
    }
    Ok(start)
}

/// `dc:description` (x-default) and the `captioner:` properties, indented like the rest.
fn write_properties(
    writer: &mut Writer<Vec<u8>>,
    value: &XmpCaption,
) -> std::result::Result<(), String> {
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    let indent = |writer: &mut Writer<Vec<u8>>, n: usize| {
        writer.write_event(Event::Text(BytesText::from_escaped(format!(
            "\n{}",
            " ".repeat(n)
        ))))
    };
    w(indent(writer, 3))?;
    w(writer.write_event(Event::Start(BytesStart::new("dc:description"))))?;
    w(indent(writer, 4))?;
    w(writer.write_event(Event::Start(BytesStart::new("rdf:Alt"))))?;
    w(indent(writer, 5))?;
    let mut li = BytesStart::new("rdf:li");
    li.push_attribute(("xml:lang", "x-default"));
    w(writer.write_event(Event::Start(li)))?;
    w(writer.write_event(Event::Text(BytesText::new(&value.caption))))?;
    w(writer.write_event(Event::End(BytesEnd::new("rdf:li"))))?;
    w(indent(writer, 4))?;
    w(writer.write_event(Event::End(BytesEnd::new("rdf:Alt"))))?;
    w(indent(writer, 3))?;
    w(writer.write_event(Event::End(BytesEnd::new("dc:description"))))?;
    for (name, text) in [
        ("captioner:model", &value.model),
        ("captioner:modelName", &value.model_name),
    ] {
        w(indent(writer, 3))?;
        w(writer.write_event(Event::Start(BytesStart::new(name))))?;
        w(writer.write_event(Event::Text(BytesText::new(text))))?;
        w(writer.write_event(Event::End(BytesEnd::new(name))))?;
    }
    w(indent(writer, 2))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(caption: &str) -> XmpCaption {
        XmpCaption {
            caption: caption.into(),
            model: "ab12".into(),
            model_name: "model.safetensors".into(),
        }
    }

    /// A Lightroom-style sidecar: a rating and keywords as attributes and elements, an old
    /// description in another prefix for Dublin Core, and a second Description.
    const LIGHTROOM: &str = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:d="http://purl.org/dc/elements/1.1/" xmp:Rating="4">
   <d:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>sea &amp; sand</rdf:li></rdf:Bag></d:subject>
   <d:description><rdf:Alt><rdf:li xml:lang="x-default">old words</rdf:li></rdf:Alt></d:description>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="Brest"/>
 </rdf:RDF>
</x:xmpmeta>"#;

    #[test]
    fn merge_replaces_the_description_and_keeps_everything_else() {
        let merged = merge(LIGHTROOM, &value("a dog & a <ball>")).unwrap();
        let back = read_sidecar(&merged).unwrap();
        assert_eq!(back.description.as_deref(), Some("a dog & a <ball>"));
        assert_eq!(back.model.as_deref(), Some("ab12"));
        for kept in [
            "xmp:Rating=\"4\"",
            "<rdf:li>holiday</rdf:li>",
            "sea &amp; sand",
            "photoshop:City=\"Brest\"",
        ] {
            assert!(merged.contains(kept), "{kept} lost:\n{merged}");
        }
        assert!(!merged.contains("old words"), "{merged}");
        // Merging again changes nothing but the caption.
        let again = merge(&merged, &value("a cat")).unwrap();
        assert_eq!(again.matches("dc:description>").count(), 2, "{again}");
        assert_eq!(
            read_sidecar(&again).unwrap().description.as_deref(),
            Some("a cat")
        );
    }

    #[test]
    fn a_new_sidecar_is_written_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("photo.jpg");
        let base = sidecar_path(&image, SidecarName::Base);
        assert_eq!(base, dir.path().join("photo.xmp"));
        assert_eq!(
            sidecar_path(&image, SidecarName::Full),
            dir.path().join("photo.jpg.xmp")
        );
        assert!(write_sidecar(&base, &value("a red bus")).unwrap());
        assert!(
            !write_sidecar(&base, &value("a red bus")).unwrap(),
            "up to date"
        );
        let text = std::fs::read_to_string(&base).unwrap();
        assert_eq!(
            read_sidecar(&text).unwrap().description.as_deref(),
            Some("a red bus")
        );
        std::fs::write(&base, "<html><body>not xmp</body></html>").unwrap();
        let err = write_sidecar(&base, &value("x")).unwrap_err().to_string();
        assert!(
            err.contains("photo.xmp") && err.contains("not an XMP packet"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&base).unwrap(),
            "<html><body>not xmp</body></html>"
        );
    }
}
