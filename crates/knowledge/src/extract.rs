//! Text extraction: turns an uploaded document's bytes into text for chunking and citation.
//!
//! Every format comes out as Markdown-shaped text, because that is the structure the chunker
//! reads: Markdown and plain text pass through (decoded, line endings normalised); HTML is walked
//! element by element so that headings become `#` lines, blocks become paragraphs and lists
//! become `- ` lines, with scripts, styles and navigation dropped; PDF text comes from the text
//! layer page by page (there is no OCR, so a scanned PDF is refused as empty).
//!
//! Extraction never panics on hostile input: the PDF libraries can, so their calls run under
//! `catch_unwind` and a panic is reported as a corrupt file.

use std::panic::{self, AssertUnwindSafe};

use lopdf::Document;
use scraper::{Html, Node};

use crate::chunk::{markdown_lines, LineKind};

/// The document formats the knowledge base reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Markdown,
    Text,
    Html,
    Pdf,
}

/// What extraction produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The document's text, Markdown-shaped; chunk offsets and citations point into it.
    pub text: String,
    /// The document's own title (Markdown's first `#` heading, HTML's `<title>` or first `<h1>`,
    /// the PDF Info dictionary's Title), if it has one.
    pub title: Option<String>,
    /// The number of pages, for formats that have pages (PDF).
    pub pages: Option<usize>,
}

/// Why a document's text cannot be extracted. Messages are shown to the person who uploaded it,
/// so each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "the file is not valid UTF-8 (first invalid byte at offset {offset}); save it as UTF-8, \
         or upload it as PDF"
    )]
    InvalidUtf8 { offset: usize },
    #[error(
        "the {format} file cannot be read ({reason}); check that it opens in a viewer, or export \
         it again"
    )]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error("the document has no text to index: {reason}")]
    Empty { reason: String },
}

impl SourceFormat {
    /// The format's canonical name, as stored and as accepted by [`SourceFormat::parse`].
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Markdown => "markdown",
            Self::Text => "text",
            Self::Html => "html",
            Self::Pdf => "pdf",
        }
    }

    /// A format from its name or a common alias (`md`, `txt`, `plain`, `htm`, …), ignoring case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "markdown" | "md" | "mdown" | "mkd" => Some(Self::Markdown),
            "text" | "txt" | "plain" | "plaintext" => Some(Self::Text),
            "html" | "htm" | "xhtml" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// A format from a file name's extension, ignoring case.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let extension = std::path::Path::new(name).extension()?.to_str()?;
        match extension.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "txt" | "text" => Some(Self::Text),
            "html" | "htm" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// A format from a media type (`Content-Type`), ignoring parameters such as `charset`.
    pub fn from_media_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/markdown" | "text/x-markdown" => Some(Self::Markdown),
            "text/plain" => Some(Self::Text),
            "text/html" | "application/xhtml+xml" => Some(Self::Html),
            "application/pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// A format recognised from the first bytes: the PDF header, or an HTML doctype or `<html>`
    /// tag after optional whitespace and byte order mark. Markdown and text have no signature.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            return Some(Self::Pdf);
        }
        let without_bom = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let start = without_bom
            .iter()
            .position(|byte| !byte.is_ascii_whitespace())?;
        let head = &without_bom[start..];
        let starts_with_tag = |tag: &[u8]| {
            head.get(..tag.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(tag))
                && head
                    .get(tag.len())
                    .is_none_or(|&next| next == b'>' || next.is_ascii_whitespace())
        };
        (starts_with_tag(b"<!doctype html") || starts_with_tag(b"<html")).then_some(Self::Html)
    }
}

/// Extracts the text of a document of the given format.
pub fn extract(format: SourceFormat, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let extracted = match format {
        SourceFormat::Text => Extracted {
            text: decode_text(bytes)?,
            title: None,
            pages: None,
        },
        SourceFormat::Markdown => {
            let text = decode_text(bytes)?;
            let title = markdown_title(&text);
            Extracted {
                text,
                title,
                pages: None,
            }
        }
        SourceFormat::Html => extract_html(&decode_text(bytes)?),
        SourceFormat::Pdf => extract_pdf(bytes)?,
    };
    if !extracted.text.chars().any(char::is_alphanumeric) {
        let reason = match format {
            SourceFormat::Pdf => {
                "the PDF has no text layer (it is probably a scanned image), and text recognition \
                 (OCR) is not supported; upload a PDF with selectable text, or the text itself"
            }
            SourceFormat::Html => "the page has no visible text",
            SourceFormat::Markdown | SourceFormat::Text => "the file has no letters or digits",
        };
        return Err(ExtractError::Empty {
            reason: reason.to_owned(),
        });
    }
    Ok(extracted)
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Elements whose content is not part of the document's text: code, metadata, navigation,
/// graphics, embedded content and form controls.
const SKIPPED_ELEMENTS: &[&str] = &[
    "script", "style", "noscript", "template", "head", "nav", "footer", "svg", "math", "iframe",
    "object", "canvas", "select", "button",
];

/// Elements that start and end a paragraph.
const BLOCK_ELEMENTS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "aside",
    "header",
    "blockquote",
    "figure",
    "figcaption",
    "address",
    "table",
    "caption",
    "form",
    "fieldset",
    "legend",
    "details",
    "summary",
    "dl",
    "hr",
    "center",
    "body",
];

/// Elements that start and end a line within a paragraph.
const LINE_ELEMENTS: &[&str] = &["tr", "dt", "dd"];

/// Elements that hold list items.
const LIST_ELEMENTS: &[&str] = &["ul", "ol", "menu"];

/// Decodes UTF-8, drops a byte order mark and normalises line endings to LF.
fn decode_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let text = std::str::from_utf8(bytes).map_err(|error| ExtractError::InvalidUtf8 {
        offset: error.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Ok(normalise_line_endings(text))
}

/// CRLF and lone CR become LF, so offsets and line handling are the same for every origin.
fn normalise_line_endings(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    let mut normalised = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\r' {
            chars.next_if_eq(&'\n');
            normalised.push('\n');
        } else {
            normalised.push(ch);
        }
    }
    normalised
}

/// The text of the first level-one ATX heading outside fenced code.
fn markdown_title(text: &str) -> Option<String> {
    markdown_lines(text).find_map(|line| match line.kind {
        LineKind::Heading { level: 1, text } => Some(text.to_owned()),
        _ => None,
    })
}

fn extract_html(source: &str) -> Extracted {
    let document = Html::parse_document(source);
    let mut writer = MarkdownWriter::default();

    // An explicit stack instead of recursion: a page nested thousands of elements deep must not
    // overflow the thread's stack. `true` marks the closing visit of an element.
    let mut stack = vec![(document.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Text(text) => writer.push_text(text),
            Node::Element(element) if closing => writer.close(element.name()),
            Node::Element(element) => {
                let name = element.name();
                if SKIPPED_ELEMENTS.contains(&name) || element.attr("hidden").is_some() {
                    continue;
                }
                writer.open(name);
                stack.push((node, true));
                stack.extend(node.children().rev().map(|child| (child, false)));
            }
            Node::Document | Node::Fragment => {
                stack.extend(node.children().rev().map(|child| (child, false)));
            }
            Node::Doctype(_) | Node::Comment(_) | Node::ProcessingInstruction(_) => {}
        }
    }
    writer.end_block();

    let head_title = document
        .tree
        .root()
        .descendants()
        .filter(|node| node_is(node.value(), "head"))
        .flat_map(|head| head.descendants())
        .find(|node| node_is(node.value(), "title"))
        .map(|title| {
            let text: String = title
                .descendants()
                .filter_map(|node| node.value().as_text().map(|text| &**text))
                .collect();
            collapse_whitespace(&text)
        })
        .filter(|title| !title.is_empty());
    Extracted {
        text: writer.blocks.join("\n\n"),
        title: head_title.or(writer.first_h1),
        pages: None,
    }
}

fn node_is(node: &Node, name: &str) -> bool {
    node.as_element()
        .is_some_and(|element| element.name() == name)
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes Markdown-shaped text from a stream of HTML open, text and close events.
#[derive(Debug, Default)]
struct MarkdownWriter {
    /// Finished paragraphs, joined by blank lines at the end.
    blocks: Vec<String>,
    /// The paragraph being written.
    current: String,
    /// Whitespace was seen since the last character: a space goes in before the next one.
    pending_space: bool,
    /// A line marker (`## `, `- `) written when the line gets its first character, so that empty
    /// headings and list items leave nothing behind.
    pending_prefix: Option<String>,
    /// The heading level being written, if inside `h1`…`h6`.
    heading_level: Option<usize>,
    first_h1: Option<String>,
    n_open_lists: usize,
    n_open_items: usize,
    n_open_pres: usize,
    /// The raw text of the outermost open `pre`.
    pre_text: String,
}

impl MarkdownWriter {
    fn open(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            self.end_block();
            self.heading_level = Some(level);
            self.pending_prefix = Some(format!("{} ", "#".repeat(level)));
        } else if name == "pre" {
            if self.n_open_pres == 0 {
                self.end_block();
                self.pre_text.clear();
            }
            self.n_open_pres += 1;
        } else if name == "li" {
            self.line_break();
            let indent = "  ".repeat(self.n_open_lists.saturating_sub(1));
            self.pending_prefix = Some(format!("{indent}- "));
            self.n_open_items += 1;
        } else if LIST_ELEMENTS.contains(&name) {
            self.n_open_lists += 1;
            self.paragraph_boundary();
        } else if name == "td" || name == "th" {
            if !self.at_line_start() {
                self.current.push_str(" | ");
                self.pending_space = false;
            }
        } else if name == "br" {
            self.hard_break();
        } else if BLOCK_ELEMENTS.contains(&name) {
            self.paragraph_boundary();
        } else if LINE_ELEMENTS.contains(&name) {
            self.line_break();
        }
    }

    fn close(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            if level == 1 && self.first_h1.is_none() {
                // A heading always starts a fresh block, so the block is the marker and the text.
                let title = self.current.strip_prefix("# ").unwrap_or_default().trim();
                if !title.is_empty() {
                    self.first_h1 = Some(title.to_owned());
                }
            }
            self.end_block();
            self.heading_level = None;
        } else if name == "pre" {
            self.n_open_pres = self.n_open_pres.saturating_sub(1);
            if self.n_open_pres == 0 {
                self.end_pre();
            }
        } else if name == "li" {
            self.line_break();
            self.pending_prefix = None;
            self.n_open_items = self.n_open_items.saturating_sub(1);
        } else if LIST_ELEMENTS.contains(&name) {
            self.n_open_lists = self.n_open_lists.saturating_sub(1);
            self.paragraph_boundary();
        } else if BLOCK_ELEMENTS.contains(&name) {
            self.paragraph_boundary();
        } else if LINE_ELEMENTS.contains(&name) {
            self.line_break();
        }
    }

    /// Appends inline text, collapsing whitespace as a browser does (except inside `pre`).
    fn push_text(&mut self, text: &str) {
        if self.n_open_pres > 0 {
            self.pre_text.push_str(text);
            return;
        }
        for ch in text.chars() {
            if ch.is_whitespace() {
                self.pending_space = true;
                continue;
            }
            if self.at_line_start() {
                if let Some(prefix) = self.pending_prefix.take() {
                    self.current.push_str(&prefix);
                }
            } else if self.pending_space && !self.current.ends_with(' ') {
                self.current.push(' ');
            }
            self.pending_space = false;
            self.current.push(ch);
        }
    }

    fn at_line_start(&self) -> bool {
        self.current.is_empty() || self.current.ends_with('\n')
    }

    /// A block element's edge: a new paragraph, except inside a list item, where a paragraph
    /// break would cut the item from its `- ` marker, so it is a new line instead.
    fn paragraph_boundary(&mut self) {
        if self.n_open_items > 0 {
            self.line_break();
        } else {
            self.end_block();
        }
    }

    /// `<br>`: a new line; a second one in a row (an empty line) ends the paragraph, as authors
    /// use `<br><br>` for paragraphs. Inside a heading it is a space, as headings are one line.
    fn hard_break(&mut self) {
        if self.n_open_pres > 0 {
            self.pre_text.push('\n');
        } else if self.heading_level.is_some() {
            self.pending_space = true;
        } else if self.current.ends_with('\n') && self.n_open_items == 0 {
            self.end_block();
        } else {
            self.line_break();
        }
    }

    fn line_break(&mut self) {
        let trimmed_len = self.current.trim_end_matches(' ').len();
        self.current.truncate(trimmed_len);
        if !self.at_line_start() {
            self.current.push('\n');
        }
        self.pending_space = false;
    }

    fn end_block(&mut self) {
        let block = self.current.trim();
        if !block.is_empty() {
            self.blocks.push(block.to_owned());
        }
        self.current.clear();
        self.pending_space = false;
        self.pending_prefix = None;
    }

    /// Writes the collected `pre` text as a fenced code block, so the chunker keeps it in one
    /// piece and does not read its `#` lines (shell comments, say) as headings. The fence is
    /// longer than any backtick run inside so the code cannot close it.
    fn end_pre(&mut self) {
        self.end_block();
        let code = self.pre_text.trim_start_matches('\n').trim_end();
        if !code.trim().is_empty() {
            let longest_backtick_run = code.split(|ch| ch != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat((longest_backtick_run + 1).max(3));
            self.blocks.push(format!("{fence}\n{code}\n{fence}"));
        }
        self.pre_text.clear();
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn extract_pdf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    // pdf-extract and lopdf index and unwrap freely on malformed files; a panic there is the
    // file's fault, not the server's, and must not take the worker down. Nothing captured
    // outlives the closure, so a panic cannot leave shared state half-updated.
    match panic::catch_unwind(AssertUnwindSafe(|| extract_pdf_unguarded(bytes))) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_owned());
            Err(corrupt_pdf(format!("the PDF reader failed: {detail}")))
        }
    }
}

fn extract_pdf_unguarded(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut document = Document::load_mem(bytes)
        .map_err(|error| corrupt_pdf(format!("the PDF structure is invalid: {error}")))?;
    // As pdf-extract does: an encrypted PDF without a user password opens with the empty one.
    if document.is_encrypted() && document.decrypt("").is_err() {
        return Err(corrupt_pdf(
            "the PDF is protected by a password; remove the protection and upload it again"
                .to_owned(),
        ));
    }
    let title = pdf_title(&document);
    let page_numbers: Vec<u32> = document.get_pages().keys().copied().collect();

    let mut page_texts = Vec::with_capacity(page_numbers.len());
    let mut first_error = None;
    for &page_number in &page_numbers {
        let mut raw = String::new();
        let result = {
            let mut output = pdf_extract::PlainTextOutput::new(&mut raw);
            pdf_extract::output_doc_page(&document, &mut output, page_number)
        };
        match result {
            Ok(()) => page_texts.push(normalise_pdf_page(&raw)),
            Err(error) => {
                // One unreadable page should not cost the rest of the document.
                tracing::warn!(page = page_number, error = %error, "skipping an unreadable PDF page");
                first_error.get_or_insert(error);
            }
        }
    }
    if page_texts.is_empty() {
        if let Some(error) = first_error {
            return Err(corrupt_pdf(format!("no page can be read: {error}")));
        }
    }

    let text = page_texts
        .iter()
        .filter(|page| !page.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok(Extracted {
        text,
        title,
        pages: Some(page_numbers.len()),
    })
}

fn corrupt_pdf(reason: String) -> ExtractError {
    ExtractError::Corrupt {
        format: SourceFormat::Pdf.as_str(),
        reason,
    }
}

/// The Title entry of the document Info dictionary, when present and not blank.
fn pdf_title(document: &Document) -> Option<String> {
    let info = document.trailer.get(b"Info").ok()?;
    let (_, info) = document.dereference(info).ok()?;
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, title) = document.dereference(title).ok()?;
    let title = lopdf::decode_text_string(title).ok()?;
    let title = collapse_whitespace(&title.replace(|ch: char| ch.is_control(), " "));
    (!title.is_empty()).then_some(title)
}

/// Cleans one page of pdf-extract output: whitespace collapsed within lines, runs of blank lines
/// reduced to one (they separate paragraphs), typographic ligatures expanded so words match
/// queries, and a word hyphenated across a line break rejoined when that is unambiguous.
fn normalise_pdf_page(raw: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut previous_blank = true;
    for raw_line in raw.lines() {
        let line = collapse_whitespace(&expand_ligatures(raw_line).replace(char::is_control, " "));
        if line.is_empty() {
            if !previous_blank {
                lines.push(String::new());
            }
            previous_blank = true;
            continue;
        }
        previous_blank = false;
        match lines.last_mut() {
            Some(last) if joins_hyphenated(last, &line) => {
                last.pop();
                last.push_str(&line);
            }
            _ => lines.push(line),
        }
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

/// Whether `line` ends with a word broken by a hyphen that `next` continues: only a lowercase
/// letter, a hyphen, then a lowercase letter on the next line. Compounds such as
/// "well-\nknown" lose their hyphen too; the rule accepts that, as the break is far more often
/// mere hyphenation, and anything less trivial (capitals, digits, dashes) is left as is.
fn joins_hyphenated(line: &str, next: &str) -> bool {
    let mut tail = line.chars().rev();
    tail.next() == Some('-')
        && tail.next().is_some_and(char::is_lowercase)
        && next.chars().next().is_some_and(char::is_lowercase)
}

fn expand_ligatures(line: &str) -> String {
    let mut expanded = String::with_capacity(line.len());
    for ch in line.chars() {
        match ch {
            '\u{FB00}' => expanded.push_str("ff"),
            '\u{FB01}' => expanded.push_str("fi"),
            '\u{FB02}' => expanded.push_str("fl"),
            '\u{FB03}' => expanded.push_str("ffi"),
            '\u{FB04}' => expanded.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => expanded.push_str("st"),
            _ => expanded.push(ch),
        }
    }
    expanded
}

#[cfg(test)]
mod tests {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Object, Stream};

    use super::*;

    /// A valid PDF whose pages each show one line of text in Helvetica.
    fn pdf_with_pages(page_lines: &[&str], title: Option<&str>) -> Vec<u8> {
        let mut document = Document::with_version("1.5");
        let pages_id = document.new_object_id();
        let font_id = document.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
        });
        let resources_id = document.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut page_ids = Vec::new();
        for line in page_lines {
            let content = Content {
                operations: vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 18.into()]),
                    Operation::new("Td", vec![72.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*line)]),
                    Operation::new("ET", vec![]),
                ],
            };
            let content_id =
                document.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
            page_ids.push(document.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
            }));
        }
        let pages = dictionary! {
            "Type" => "Pages",
            "Kids" => page_ids.iter().map(|&id| id.into()).collect::<Vec<Object>>(),
            "Count" => i64::try_from(page_ids.len()).unwrap(),
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        };
        document.objects.insert(pages_id, Object::Dictionary(pages));
        let catalog_id = document.add_object(dictionary! {
            "Type" => "Catalog",
            "Pages" => pages_id,
        });
        document.trailer.set("Root", catalog_id);
        if let Some(title) = title {
            let info_id = document.add_object(dictionary! {
                "Title" => Object::string_literal(title),
            });
            document.trailer.set("Info", info_id);
        }
        let mut bytes = Vec::new();
        document.save_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn format_names_and_aliases_parse() {
        for format in [
            SourceFormat::Markdown,
            SourceFormat::Text,
            SourceFormat::Html,
            SourceFormat::Pdf,
        ] {
            assert_eq!(SourceFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(SourceFormat::parse("MD"), Some(SourceFormat::Markdown));
        assert_eq!(SourceFormat::parse("txt"), Some(SourceFormat::Text));
        assert_eq!(SourceFormat::parse("plain"), Some(SourceFormat::Text));
        assert_eq!(SourceFormat::parse("htm"), Some(SourceFormat::Html));
        assert_eq!(SourceFormat::parse("docx"), None);
    }

    #[test]
    fn formats_follow_file_names_and_media_types() {
        assert_eq!(
            SourceFormat::from_file_name("notes/README.MD"),
            Some(SourceFormat::Markdown)
        );
        assert_eq!(
            SourceFormat::from_file_name("a.markdown"),
            Some(SourceFormat::Markdown)
        );
        assert_eq!(
            SourceFormat::from_file_name("a.txt"),
            Some(SourceFormat::Text)
        );
        assert_eq!(
            SourceFormat::from_file_name("a.Text"),
            Some(SourceFormat::Text)
        );
        assert_eq!(
            SourceFormat::from_file_name("index.HTM"),
            Some(SourceFormat::Html)
        );
        assert_eq!(
            SourceFormat::from_file_name("page.html"),
            Some(SourceFormat::Html)
        );
        assert_eq!(
            SourceFormat::from_file_name("paper.PDF"),
            Some(SourceFormat::Pdf)
        );
        assert_eq!(SourceFormat::from_file_name("archive.zip"), None);
        assert_eq!(SourceFormat::from_file_name("Makefile"), None);

        assert_eq!(
            SourceFormat::from_media_type("text/html; charset=utf-8"),
            Some(SourceFormat::Html)
        );
        assert_eq!(
            SourceFormat::from_media_type("Application/XHTML+XML"),
            Some(SourceFormat::Html)
        );
        assert_eq!(
            SourceFormat::from_media_type("text/markdown;variant=GFM"),
            Some(SourceFormat::Markdown)
        );
        assert_eq!(
            SourceFormat::from_media_type("text/plain"),
            Some(SourceFormat::Text)
        );
        assert_eq!(
            SourceFormat::from_media_type("application/pdf"),
            Some(SourceFormat::Pdf)
        );
        assert_eq!(SourceFormat::from_media_type("image/png"), None);
    }

    #[test]
    fn sniffing_recognises_pdf_and_html() {
        assert_eq!(
            SourceFormat::sniff(b"%PDF-1.7\n..."),
            Some(SourceFormat::Pdf)
        );
        assert_eq!(
            SourceFormat::sniff(b"\xEF\xBB\xBF \n<!DOCTYPE HTML>\n<html>"),
            Some(SourceFormat::Html)
        );
        assert_eq!(
            SourceFormat::sniff(b"<HTML lang=\"en\"><body>"),
            Some(SourceFormat::Html)
        );
        assert_eq!(SourceFormat::sniff(b"<html>"), Some(SourceFormat::Html));
        assert_eq!(SourceFormat::sniff(b"<htmlish>"), None);
        assert_eq!(SourceFormat::sniff(b"# Markdown"), None);
        assert_eq!(SourceFormat::sniff(b"  see %PDF- later"), None);
        assert_eq!(SourceFormat::sniff(b""), None);
    }

    #[test]
    fn markdown_passes_through_with_normalised_line_endings() {
        let bytes = "\u{feff}Intro line\r\n\r\n# The Title\r\nBody\rmore\r\n".as_bytes();
        let extracted = extract(SourceFormat::Markdown, bytes).unwrap();
        assert_eq!(extracted.text, "Intro line\n\n# The Title\nBody\nmore\n");
        assert_eq!(extracted.title.as_deref(), Some("The Title"));
        assert_eq!(extracted.pages, None);
    }

    #[test]
    fn markdown_title_ignores_code_and_lower_headings() {
        let text = "## Not this\n\n```\n# nor this\n```\n\n# Real title #\n";
        let extracted = extract(SourceFormat::Markdown, text.as_bytes()).unwrap();
        assert_eq!(extracted.title.as_deref(), Some("Real title"));
        let extracted = extract(SourceFormat::Markdown, b"No heading at all.").unwrap();
        assert_eq!(extracted.title, None);
    }

    #[test]
    fn plain_text_has_no_title() {
        let extracted = extract(SourceFormat::Text, b"# looks like a heading\r\nline").unwrap();
        assert_eq!(extracted.text, "# looks like a heading\nline");
        assert_eq!(extracted.title, None);
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let mut bytes = b"seventeen bytes..".to_vec();
        assert_eq!(bytes.len(), 17);
        bytes.extend_from_slice(b"\xE9t\xE9");
        let error = extract(SourceFormat::Text, &bytes).unwrap_err();
        assert!(
            matches!(error, ExtractError::InvalidUtf8 { offset: 17 }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("offset 17"), "{message}");
        assert!(message.contains("save it as UTF-8"), "{message}");
    }

    #[test]
    fn text_without_letters_or_digits_is_empty() {
        for bytes in [&b""[..], b"   \n\n", b"\xEF\xBB\xBF", b"--- *** ---"] {
            let error = extract(SourceFormat::Markdown, bytes).unwrap_err();
            assert!(matches!(error, ExtractError::Empty { .. }), "{error:?}");
        }
        let error = extract(
            SourceFormat::Html,
            b"<html><script>var x = 1;</script></html>",
        )
        .unwrap_err();
        assert!(matches!(error, ExtractError::Empty { .. }), "{error:?}");
    }

    #[test]
    fn html_becomes_markdown_shaped_text() {
        let html = r##"<!DOCTYPE html>
<html><head><title>  The   Page &amp; Title </title>
<style>body { color: red }</style><script>alert("x")</script></head>
<body>
  <nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
  <h1>Main   heading</h1>
  <p>First   paragraph with <b>bold</b>
     and <a href="#">a link</a>.</p>
  <div>A div block<br>with a break.</div>
  <h2>Lists</h2>
  <ul>
    <li>One</li>
    <li><p>Two</p></li>
    <li>Three<ul><li>Nested</li></ul></li>
  </ul>
  <h3></h3>
  <pre>fn main() {
    # not a heading
}</pre>
  <noscript>Enable JavaScript</noscript>
  <template><p>Hidden template</p></template>
  <p hidden>Hidden paragraph</p>
  <svg><text>svg text</text></svg>
  <table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td>1 &lt; 2</td></tr></table>
  <footer>Copyright</footer>
  <script>document.write("late")</script>
</body></html>"##;
        let extracted = extract(SourceFormat::Html, html.as_bytes()).unwrap();
        assert_eq!(
            extracted.text,
            "# Main heading\n\n\
             First paragraph with bold and a link.\n\n\
             A div block\nwith a break.\n\n\
             ## Lists\n\n\
             - One\n- Two\n- Three\n  - Nested\n\n\
             ```\nfn main() {\n    # not a heading\n}\n```\n\n\
             Key | Value\na | 1 < 2"
        );
        assert_eq!(extracted.title.as_deref(), Some("The Page & Title"));
        assert_eq!(extracted.pages, None);
    }

    #[test]
    fn html_title_falls_back_to_the_first_h1() {
        let html = "<body><h2>Sub</h2><h1>  First <em>big</em> one </h1><h1>Second</h1></body>";
        let extracted = extract(SourceFormat::Html, html.as_bytes()).unwrap();
        assert_eq!(extracted.title.as_deref(), Some("First big one"));
        assert_eq!(extracted.text, "## Sub\n\n# First big one\n\n# Second");
    }

    #[test]
    fn html_paragraph_breaks_and_deep_nesting() {
        let html = "<p>one<br><br>two</p>";
        let extracted = extract(SourceFormat::Html, html.as_bytes()).unwrap();
        assert_eq!(extracted.text, "one\n\ntwo");

        // Deep enough to overflow a test thread's stack if the walk recursed; not deeper,
        // because html5ever's parsing time grows with the square of the nesting depth.
        let deep = format!(
            "{}deep text{}",
            "<div>".repeat(5_000),
            "</div>".repeat(5_000)
        );
        let extracted = extract(SourceFormat::Html, deep.as_bytes()).unwrap();
        assert_eq!(extracted.text, "deep text");
    }

    #[test]
    fn html_pre_fence_outlasts_backticks_inside() {
        let html = "<pre>```\ncode\n```</pre>";
        let extracted = extract(SourceFormat::Html, html.as_bytes()).unwrap();
        assert_eq!(extracted.text, "````\n```\ncode\n```\n````");
    }

    #[test]
    fn pdf_text_comes_page_by_page() {
        let bytes = pdf_with_pages(
            &["Alpha bravo charlie", "Delta echo foxtrot"],
            Some("  Test   Document "),
        );
        assert_eq!(SourceFormat::sniff(&bytes), Some(SourceFormat::Pdf));
        let extracted = extract(SourceFormat::Pdf, &bytes).unwrap();
        assert_eq!(extracted.pages, Some(2));
        assert_eq!(extracted.title.as_deref(), Some("Test Document"));
        assert_eq!(extracted.text, "Alpha bravo charlie\n\nDelta echo foxtrot");
    }

    #[test]
    fn pdf_without_info_title_has_none() {
        let bytes = pdf_with_pages(&["Only page"], None);
        let extracted = extract(SourceFormat::Pdf, &bytes).unwrap();
        assert_eq!(extracted.title, None);
        assert_eq!(extracted.pages, Some(1));
    }

    #[test]
    fn pdf_without_text_is_empty_and_says_ocr_is_unsupported() {
        let bytes = pdf_with_pages(&["", ""], None);
        let error = extract(SourceFormat::Pdf, &bytes).unwrap_err();
        assert!(matches!(error, ExtractError::Empty { .. }), "{error:?}");
        assert!(error.to_string().contains("OCR"), "{error}");
    }

    #[test]
    fn corrupt_pdf_is_an_error_not_a_panic() {
        let error = extract(
            SourceFormat::Pdf,
            b"%PDF-1.4\n\x00\x01garbage that is not a PDF",
        )
        .unwrap_err();
        assert!(
            matches!(error, ExtractError::Corrupt { format: "pdf", .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().starts_with("the pdf file cannot be read"),
            "{error}"
        );

        // Every truncation of a valid file must end in a result, whatever it is.
        let bytes = pdf_with_pages(&["Alpha bravo", "Charlie delta"], Some("Title"));
        for length in (0..bytes.len()).step_by(37) {
            let _ = extract(SourceFormat::Pdf, &bytes[..length]);
        }
    }

    #[test]
    fn pdf_pages_are_normalised() {
        let raw = "\n\n  Intro   text\twith  tabs \nhyphen-\nation and well-\nknown \
                   X-\nRay\n\n\n\nNext ﬁle para\n\n";
        assert_eq!(
            normalise_pdf_page(raw),
            "Intro text with tabs\nhyphenation and wellknown X-\nRay\n\nNext file para"
        );
    }
}
