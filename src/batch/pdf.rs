//! One merged PDF, written label by label. Each label is parsed with lopdf; its pages and
//! every object they reach are renumbered into the merged file's numbering and written out
//! at once. What stays until the end is small: one offset per object written (for the
//! cross-reference table) and the page numbers (for the page tree). [`Merger::finish`]
//! writes the page tree, the catalog, the cross-reference table and the trailer.
//!
//! A label's own page tree and catalog are not copied: its pages hang off the merged tree,
//! each with the attributes it inherited from its old tree (resources, media box, crop box,
//! rotation) copied onto it. Document-level parts of a label (outlines, metadata, form
//! catalogs) are left out; everything its pages show is kept.
//!
//! A label is refused ([`Unreadable`]) when lopdf cannot parse it, when it has no pages,
//! when it is encrypted beyond lopdf's empty-password decryption, or when an object its
//! pages need is listed in its cross-reference table but could not be read (lopdf skips
//! such objects silently; a merged file missing them would be broken).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;

use lopdf::xref::XrefEntry;
use lopdf::{Dictionary, Document, Object, ObjectId, StringFormat};

/// Object 1 is the merged catalog and object 2 the merged page tree: written last, once
/// every page is known.
const CATALOG: u32 = 1;
const PAGES: u32 = 2;

/// Page attributes a page may inherit from its ancestors in the page tree (ISO 32000-1,
/// 7.7.3.4).
const INHERITABLE: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// Deeper page trees are refused (real ones are a few levels deep).
const MAX_TREE_DEPTH: usize = 64;

/// `%PDF-1.7` and a comment of four high bytes, which marks the file as binary.
const HEADER: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n";

/// Why a label cannot be merged; the text is for the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// The merged file's state between labels.
#[derive(Debug)]
pub struct Merger {
    /// Bytes handed out so far.
    written: u64,
    /// `offsets[n - 1]` is where object `n` starts (objects 1 and 2 are filled by `finish`).
    offsets: Vec<u64>,
    /// The merged file's page objects, in order.
    pages: Vec<u32>,
    /// A label declared PDF 2.0: the catalog says so (the header says 1.7).
    pdf2: bool,
}

impl Default for Merger {
    fn default() -> Self {
        Merger::new()
    }
}

/// One label's page, with the inheritable attributes its ancestors set.
struct Page {
    id: ObjectId,
    inherited: Dictionary,
}

impl Merger {
    pub fn new() -> Merger {
        Merger {
            written: 0,
            offsets: vec![0, 0],
            pages: Vec::new(),
            pdf2: false,
        }
    }

    /// Pages merged so far.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Appends the pages of `pdf`. Returns the bytes to send next: the file header first
    /// time, then this label's objects. On an error nothing changed.
    pub fn add(&mut self, pdf: &[u8]) -> Result<Vec<u8>, Unreadable> {
        let doc =
            Document::load_mem(pdf).map_err(|e| Unreadable(format!("not a readable PDF ({e})")))?;
        if doc.trailer.has(b"Encrypt") {
            return Err(Unreadable("the PDF is encrypted".into()));
        }
        let pages = page_list(&doc)?;
        let first = self.offsets.len() as u32 + 1;
        let (order, numbers) = reachable(&doc, &pages, first)?;
        let page_ids: HashMap<ObjectId, &Dictionary> =
            pages.iter().map(|p| (p.id, &p.inherited)).collect();

        let mut out = Vec::with_capacity(pdf.len() + 1024);
        if self.written == 0 {
            out.extend_from_slice(HEADER);
        }
        let mut offsets = Vec::with_capacity(order.len());
        for id in &order {
            offsets.push(self.written + out.len() as u64);
            let n = numbers[id];
            let _ = writeln!(out, "{n} 0 obj");
            match (doc.objects.get(id), page_ids.get(id)) {
                (Some(Object::Dictionary(page)), Some(inherited)) => {
                    write_page(&mut out, page, inherited, &numbers)
                }
                (Some(Object::Stream(stream)), _) => {
                    // The length is written direct: the label's own may be an object that
                    // is not copied.
                    out.extend_from_slice(b"<<");
                    write_entries(&mut out, &stream.dict, &numbers, &[b"Length"]);
                    let _ = write!(out, " /Length {}>>\nstream\n", stream.content.len());
                    out.extend_from_slice(&stream.content);
                    out.extend_from_slice(b"\nendstream");
                }
                (Some(object), _) => write_object(&mut out, object, &numbers),
                (None, _) => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"\nendobj\n");
        }

        self.written += out.len() as u64;
        self.offsets.extend(offsets);
        self.pages
            .extend(pages.iter().map(|p| numbers[&p.id]).collect::<Vec<_>>());
        self.pdf2 |= doc.version.starts_with('2');
        Ok(out)
    }

    /// The page tree, the catalog, the cross-reference table and the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 12 * self.pages.len() + 20 * self.offsets.len());
        if self.written == 0 {
            out.extend_from_slice(HEADER);
        }
        self.offsets[PAGES as usize - 1] = self.written + out.len() as u64;
        let _ = write!(out, "{PAGES} 0 obj\n<< /Type /Pages /Kids [");
        for page in &self.pages {
            let _ = write!(out, "{page} 0 R ");
        }
        let _ = write!(out, "] /Count {} >>\nendobj\n", self.pages.len());

        self.offsets[CATALOG as usize - 1] = self.written + out.len() as u64;
        let version = if self.pdf2 { " /Version /2.0" } else { "" };
        let _ = write!(
            out,
            "{CATALOG} 0 obj\n<< /Type /Catalog /Pages {PAGES} 0 R{version} >>\nendobj\n"
        );

        let xref = self.written + out.len() as u64;
        let size = self.offsets.len() + 1;
        let _ = write!(out, "xref\n0 {size}\n0000000000 65535 f \n");
        for offset in &self.offsets {
            let _ = writeln!(out, "{offset:010} 00000 n ");
        }
        let id: [u8; 16] = rand::random();
        let id: String = id.iter().map(|b| format!("{b:02X}")).collect();
        let _ = write!(
            out,
            "trailer\n<< /Size {size} /Root {CATALOG} 0 R /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n"
        );
        out
    }
}

/// The label's pages in order, each with what it inherits. Refuses a tree with a cycle, a
/// missing node, or no page at all.
fn page_list(doc: &Document) -> Result<Vec<Page>, Unreadable> {
    let broken = |what: &str| Unreadable(format!("its page tree is broken ({what})"));
    let root = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|_| broken("no catalog"))?;
    let top = dict_of(doc, root)
        .and_then(|catalog| catalog.get(b"Pages").ok())
        .and_then(|p| p.as_reference().ok())
        .ok_or_else(|| broken("no page tree"))?;

    let mut pages = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(top, 0usize, Dictionary::new())];
    while let Some((id, depth, inherited)) = stack.pop() {
        if !seen.insert(id) {
            return Err(broken("a node appears twice"));
        }
        if depth > MAX_TREE_DEPTH {
            return Err(broken("too deep"));
        }
        let node = dict_of(doc, id).ok_or_else(|| broken("a node is missing"))?;
        let is_node = match node.get_type() {
            Ok(t) => t == b"Pages",
            Err(_) => node.has(b"Kids"),
        };
        if !is_node {
            pages.push(Page { id, inherited });
            continue;
        }
        let mut inherited = inherited;
        for key in INHERITABLE {
            if let Ok(value) = node.get(key) {
                inherited.set(key.to_vec(), value.clone());
            }
        }
        let kids = match node.get(b"Kids") {
            Ok(Object::Array(kids)) => kids,
            Ok(Object::Reference(r)) => match doc.objects.get(r) {
                Some(Object::Array(kids)) => kids,
                _ => return Err(broken("unreadable kids")),
            },
            _ => return Err(broken("a node without kids")),
        };
        for kid in kids.iter().rev() {
            let kid = kid
                .as_reference()
                .map_err(|_| broken("a kid is not a reference"))?;
            stack.push((kid, depth + 1, inherited.clone()));
        }
    }
    if pages.is_empty() {
        return Err(Unreadable("it has no pages".into()));
    }
    Ok(pages)
}

fn dict_of(doc: &Document, id: ObjectId) -> Option<&Dictionary> {
    doc.objects.get(&id).and_then(|o| o.as_dict().ok())
}

/// The objects to copy, in the order they are written (the pages first, so that they get
/// consecutive numbers, then what they reach, breadth first), and each one's new number
/// starting at `first`. A page's `/Parent` is not followed (it becomes the merged tree),
/// nor a stream's `/Length` (it is written direct); page tree nodes and catalogs reached
/// from elsewhere become `null`.
fn reachable(
    doc: &Document,
    pages: &[Page],
    first: u32,
) -> Result<(Vec<ObjectId>, HashMap<ObjectId, u32>), Unreadable> {
    let mut numbers = HashMap::new();
    let mut order = Vec::new();
    let mut next = first;
    for page in pages {
        numbers.insert(page.id, next);
        order.push(page.id);
        next += 1;
    }
    let inherited: HashMap<ObjectId, &Dictionary> =
        pages.iter().map(|p| (p.id, &p.inherited)).collect();
    let mut queue: VecDeque<ObjectId> = order.iter().copied().collect();
    let mut refs = Vec::new();
    while let Some(id) = queue.pop_front() {
        refs.clear();
        match (doc.objects.get(&id), inherited.get(&id)) {
            (Some(Object::Dictionary(d)), Some(inherited)) => {
                for (key, value) in d.iter() {
                    if key != b"Parent" {
                        collect_refs(value, &mut refs);
                    }
                }
                for (key, value) in inherited.iter() {
                    if !d.has(key) {
                        collect_refs(value, &mut refs);
                    }
                }
            }
            (Some(Object::Stream(s)), _) => {
                for (key, value) in s.dict.iter() {
                    if key != b"Length" {
                        collect_refs(value, &mut refs);
                    }
                }
            }
            (Some(other), _) => collect_refs(other, &mut refs),
            (None, _) => {}
        }
        for r in refs.drain(..) {
            if numbers.contains_key(&r) {
                continue;
            }
            match doc.objects.get(&r) {
                Some(o) if is_tree_node(o) => {}
                Some(_) => {
                    numbers.insert(r, next);
                    order.push(r);
                    queue.push_back(r);
                    next += 1;
                }
                None if listed(doc, r) => {
                    return Err(Unreadable(format!(
                        "object {} {} is listed but cannot be read",
                        r.0, r.1
                    )))
                }
                // A reference to an object that does not exist is null (ISO 32000-1, 7.3.10).
                None => {}
            }
        }
    }
    Ok((order, numbers))
}

fn is_tree_node(o: &Object) -> bool {
    o.as_dict()
        .ok()
        .and_then(|d| d.get_type().ok())
        .is_some_and(|t| t == b"Pages" || t == b"Catalog")
}

/// Whether the label's cross-reference table lists `id` (so lopdf failed to read it).
fn listed(doc: &Document, id: ObjectId) -> bool {
    matches!(
        doc.reference_table.get(id.0),
        Some(XrefEntry::Normal { .. } | XrefEntry::Compressed { .. })
    )
}

fn collect_refs(o: &Object, out: &mut Vec<ObjectId>) {
    match o {
        Object::Reference(r) => out.push(*r),
        Object::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        Object::Dictionary(d) => d.iter().for_each(|(_, v)| collect_refs(v, out)),
        Object::Stream(s) => s.dict.iter().for_each(|(_, v)| collect_refs(v, out)),
        _ => {}
    }
}

/// A page: its own entries but `/Parent`, the inherited ones it lacks, then the merged
/// tree as its parent.
fn write_page(
    out: &mut Vec<u8>,
    page: &Dictionary,
    inherited: &Dictionary,
    numbers: &HashMap<ObjectId, u32>,
) {
    out.extend_from_slice(b"<<");
    write_entries(out, page, numbers, &[b"Parent"]);
    for (key, value) in inherited.iter() {
        if !page.has(key) {
            out.push(b' ');
            write_name(out, key);
            out.push(b' ');
            write_object(out, value, numbers);
        }
    }
    let _ = write!(out, " /Parent {PAGES} 0 R>>");
}

/// A dictionary's entries as ` /Key value`, without the ones named in `skip`.
fn write_entries(
    out: &mut Vec<u8>,
    dict: &Dictionary,
    numbers: &HashMap<ObjectId, u32>,
    skip: &[&[u8]],
) {
    for (key, value) in dict.iter() {
        if skip.contains(&key.as_slice()) {
            continue;
        }
        out.push(b' ');
        write_name(out, key);
        out.push(b' ');
        write_object(out, value, numbers);
    }
}

/// One direct object, references renumbered (a reference to an object not copied is
/// `null`).
fn write_object(out: &mut Vec<u8>, o: &Object, numbers: &HashMap<ObjectId, u32>) {
    match o {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Object::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        // Rust prints floats without an exponent, as PDF requires.
        Object::Real(r) if r.is_finite() => {
            let _ = write!(out, "{r}");
        }
        Object::Real(_) => out.push(b'0'),
        Object::Name(name) => write_name(out, name),
        Object::String(s, StringFormat::Literal) => write_literal(out, s),
        Object::String(s, StringFormat::Hexadecimal) => {
            out.push(b'<');
            for b in s {
                let _ = write!(out, "{b:02X}");
            }
            out.push(b'>');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_object(out, item, numbers);
            }
            out.push(b']');
        }
        Object::Dictionary(d) => {
            out.extend_from_slice(b"<<");
            write_entries(out, d, numbers, &[]);
            out.extend_from_slice(b">>");
        }
        // A stream is always an indirect object; one nested in another object is invalid.
        Object::Stream(_) => out.extend_from_slice(b"null"),
        Object::Reference(r) => match numbers.get(r) {
            Some(n) => {
                let _ = write!(out, "{n} 0 R");
            }
            None => out.extend_from_slice(b"null"),
        },
    }
}

/// `/Name`, with white space, delimiters, `#` and bytes outside `!`..`~` as `#XX`.
fn write_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(b'/');
    for &b in name {
        if !(0x21..=0x7e).contains(&b) || b"()<>[]{}/%#".contains(&b) {
            let _ = write!(out, "#{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// `(text)` with `\`, both parentheses and carriage returns escaped.
fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'(');
    for &b in s {
        match b {
            b'(' | b')' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PDF written by hand: one page per text, in a two-level page tree whose top node
    /// holds the media box and the font (inherited by every page).
    fn label(texts: &[&str]) -> Vec<u8> {
        let mut objects: Vec<Vec<u8>> = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            Vec::new(), // the top node, below
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
            format!(
                "<< /Type /Pages /Parent 2 0 R /Kids [{}] /Count {} >>",
                (0..texts.len())
                    .map(|i| format!("{} 0 R", 5 + 2 * i))
                    .collect::<Vec<_>>()
                    .join(" "),
                texts.len()
            )
            .into_bytes(),
        ];
        objects[1] = format!(
            "<< /Type /Pages /Kids [4 0 R] /Count {} /MediaBox [0 0 288 432] \
             /Resources << /Font << /F1 3 0 R >> >> >>",
            texts.len()
        )
        .into_bytes();
        for (i, text) in texts.iter().enumerate() {
            objects.push(
                format!(
                    "<< /Type /Page /Parent 4 0 R /Contents {} 0 R >>",
                    6 + 2 * i
                )
                .into_bytes(),
            );
            let content = format!("BT /F1 12 Tf 20 400 Td ({text}) Tj ET");
            objects.push(
                format!(
                    "<< /Length {} >>\nstream\n{content}\nendstream",
                    content.len()
                )
                .into_bytes(),
            );
        }
        write_file(&objects)
    }

    fn write_file(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn merge(labels: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Merger::new();
        let mut out = Vec::new();
        for l in labels {
            out.extend(m.add(l).expect("label merges"));
        }
        out.extend(m.finish());
        out
    }

    fn page_texts(pdf: &[u8]) -> Vec<String> {
        let doc = Document::load_mem(pdf).expect("merged file parses");
        doc.get_pages()
            .values()
            .map(|&id| String::from_utf8_lossy(&doc.get_page_content(id).unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn pages_follow_the_labels_in_order() {
        let merged = merge(&[label(&["A1", "A2"]), label(&["B1"]), label(&["C1", "C2"])]);
        let texts = page_texts(&merged);
        assert_eq!(texts.len(), 5);
        for (text, want) in texts.iter().zip(["A1", "A2", "B1", "C1", "C2"]) {
            assert!(
                text.contains(&format!("({want})")),
                "{text} should show {want}"
            );
        }
    }

    #[test]
    fn inherited_attributes_are_copied_onto_each_page() {
        let merged = merge(&[label(&["X"])]);
        let doc = Document::load_mem(&merged).unwrap();
        let (_, &page) = doc.get_pages().iter().next().unwrap();
        let page = doc.get_dictionary(page).unwrap();
        assert!(page.has(b"MediaBox"));
        let font = page
            .get(b"Resources")
            .unwrap()
            .as_dict()
            .unwrap()
            .get(b"Font")
            .unwrap()
            .as_dict()
            .unwrap()
            .get(b"F1")
            .unwrap()
            .as_reference()
            .unwrap();
        assert_eq!(
            doc.get_dictionary(font).unwrap().get(b"BaseFont").unwrap(),
            &Object::Name(b"Helvetica".to_vec())
        );
        assert_eq!(page.get(b"Parent").unwrap().as_reference().unwrap(), (2, 0));
    }

    #[test]
    fn every_cross_reference_offset_points_at_its_object() {
        let merged = merge(&[label(&["P"]), label(&["Q", "R"])]);
        let tail = merged.len()
            - merged
                .windows(10)
                .rev()
                .position(|w| w == b"startxref\n")
                .unwrap();
        let xref_at: usize = std::str::from_utf8(&merged[tail..])
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let table = std::str::from_utf8(&merged[xref_at..]).unwrap();
        let entries: Vec<&str> = table
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .collect();
        // Catalog, page tree, then 1 + 2 pages, their content streams and two fonts.
        assert_eq!(entries.len(), 10);
        for (i, entry) in entries.iter().enumerate() {
            let offset: usize = entry[..10].parse().unwrap();
            let want = format!("{} 0 obj\n", i + 1);
            assert!(
                merged[offset..].starts_with(want.as_bytes()),
                "object {}",
                i + 1
            );
        }
    }

    #[test]
    fn a_label_that_is_not_a_pdf_changes_nothing() {
        let mut m = Merger::new();
        let first = m.add(&label(&["ok"])).unwrap();
        assert!(first.starts_with(b"%PDF-1.7"));
        assert!(m.add(b"<html>not a label</html>").is_err());
        let second = m.add(&label(&["ok2"])).unwrap();
        assert!(!second.starts_with(b"%PDF"));
        let mut merged = first;
        merged.extend(second);
        merged.extend(m.finish());
        assert_eq!(page_texts(&merged).len(), 2);
    }

    #[test]
    fn a_label_with_an_unreadable_object_is_refused() {
        let mut pdf = label(&["damaged"]);
        // Break the page's content stream object in place (same length, offsets intact).
        let at = pdf.windows(6).position(|w| w == b"6 0 ob").unwrap();
        pdf[at..at + 6].copy_from_slice(b"garbag");
        let err = Merger::new().add(&pdf).unwrap_err();
        assert!(err.0.contains("cannot be read"), "{err}");
    }

    #[test]
    fn a_label_without_pages_is_refused() {
        let pdf = write_file(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec(),
        ]);
        let err = Merger::new().add(&pdf).unwrap_err();
        assert!(err.0.contains("no pages"), "{err}");
    }

    #[test]
    fn names_and_strings_are_escaped() {
        let mut out = Vec::new();
        write_name(&mut out, b"A B#(");
        out.push(b' ');
        write_literal(&mut out, b"a(b)c\\d\re");
        assert_eq!(out, b"/A#20B#23#28 (a\\(b\\)c\\\\d\\re)");
    }
}
