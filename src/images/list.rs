//! Image lists (`--list FILE`): a `*.csv` or `*.tsv` of `path[,label]`
//! records (RFC 4180 quoting, read by xfer's own strict parser) or one path
//! per line; paths normalised against the list's folder so that two
//! spellings of one file are one file. The result is a [`Dataset`] like a
//! scanned folder's. [`csv_text`] writes a list that reads back as written.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::images::dataset::{Dataset, Item, Layout};

/// How a list file is read, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// `*.csv`: `path[,label]`, RFC 4180 quoting.
    Csv,
    /// `*.tsv`: `path[<TAB>label]`, no quoting.
    Tsv,
    /// Anything else: one path per line, the whole line (commas and tabs included).
    Lines,
}

impl ListFormat {
    pub(crate) fn of(list: &Path) -> ListFormat {
        match list
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => ListFormat::Csv,
            Some("tsv") => ListFormat::Tsv,
            _ => ListFormat::Lines,
        }
    }
}

fn list_err(list: &Path, reason: impl Into<String>) -> Error {
    Error::List {
        path: list.to_owned(),
        reason: reason.into(),
    }
}

/// The key stored in feature files for a listed path `p`: `p` normalised
/// lexically against the list's `root` (absolute, canonical): `.` components
/// dropped, `dir/..` resolved, then a path inside `root` made relative to it
/// and any other kept absolute. So `a.jpg`, `./a.jpg`, `sub/../a.jpg` and
/// `<root>/a.jpg` are one key, `a.jpg`, and a file listed under two spellings
/// is found twice. Lexical: a `sub` that is a symlink is not followed.
fn normalize_listed(root: &Path, p: &str) -> String {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in root.join(p).components() {
        match c {
            Component::CurDir => {}
            // `/..` is `/`.
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let key = match out.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        _ => &out,
    };
    key.to_str().expect("made from UTF-8 text").to_owned()
}

/// The records of a `*.csv` (`quoting`: RFC 4180 quotes) or `*.tsv` list as
/// (line where the record starts, fields). Strict, so that no record is lost
/// silently: a quote that is never closed (which would swallow every later
/// record) or text after a closing quote is an error naming the line.
/// Unquoted fields are taken as written (a `"` inside one is a character).
fn split_records(
    text: &str,
    delimiter: char,
    quoting: bool,
) -> std::result::Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        loop {
            let mut field = String::new();
            // The length of the quoted part: a `\r` inside the quotes is kept.
            let mut quoted = 0;
            if quoting && chars.peek() == Some(&'"') {
                let opened = line;
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!(
                                "the quote opening field {} of line {opened} is never closed, so every later line would be part of it; close it (a quote inside a quoted field is written twice: \"\")",
                                fields.len() + 1
                            ))
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                quoted = field.len();
                match chars.peek() {
                    None | Some('\n') | Some('\r') => {}
                    Some(&c) if c == delimiter => {}
                    Some(_) => {
                        return Err(format!(
                            "line {line} has text after the closing quote of field {}; quote the whole field, and write a quote inside it twice (\"\")",
                            fields.len() + 1
                        ))
                    }
                }
            }
            while let Some(&c) = chars.peek() {
                if c == delimiter || c == '\n' {
                    break;
                }
                field.push(c);
                chars.next();
            }
            match chars.next() {
                Some(c) if c == delimiter => fields.push(field),
                end => {
                    // A line ends with `\n` or `\r\n`.
                    if field.len() > quoted && field.ends_with('\r') {
                        field.pop();
                    }
                    fields.push(field);
                    if end.is_some() {
                        line += 1;
                    }
                    break;
                }
            }
        }
        records.push((start, fields));
    }
    Ok(records)
}

/// Reads a list of images (`--list FILE`) as a dataset:
/// - the format follows the extension ([`ListFormat`]): `*.csv` and `*.tsv` hold
///   `path[,label]` records (a first record `path[,label]` is a header and is
///   skipped), any other file one path per line; blank lines are skipped;
/// - relative paths are relative to the list file's folder, which becomes the
///   dataset's root; absolute paths are kept as they are;
/// - the images are sorted by path (byte order), so the order, and the shards of
///   a sharded extraction, do not depend on how the list was written;
/// - classes are the distinct labels, sorted; an unlabelled list gives labels −1
///   and no classes, as a flat unlabelled folder does. Either every record has a
///   label or none has;
/// - a path listed twice is an error naming both lines. Files that do not exist
///   are kept: extraction records them as skipped, with the reason.
pub fn from_list(list: &Path) -> Result<Dataset> {
    let text = fs::read(list).map_err(|e| {
        list_err(
            list,
            format!("cannot be read ({e}); pass a list file that exists"),
        )
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        list_err(
            list,
            format!(
                "is not UTF-8 text (byte {}); save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    // A byte-order mark, as spreadsheet programs write, is not part of the first path.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    // (line number, path, label)
    let mut records: Vec<(usize, String, Option<String>)> = Vec::new();
    let format = ListFormat::of(list);
    match format {
        ListFormat::Lines => {
            for (i, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if !line.is_empty() {
                    records.push((i + 1, line.to_owned(), None));
                }
            }
        }
        ListFormat::Csv | ListFormat::Tsv => {
            let delimiter = if format == ListFormat::Tsv { '\t' } else { ',' };
            let parsed = split_records(text, delimiter, format == ListFormat::Csv)
                .map_err(|reason| list_err(list, reason))?;
            for (k, (line, fields)) in parsed.into_iter().enumerate() {
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                let is_header = k == 0
                    && fields
                        .first()
                        .is_some_and(|f| f.eq_ignore_ascii_case("path"))
                    && fields
                        .get(1)
                        .is_none_or(|f| f.eq_ignore_ascii_case("label"));
                if is_header || fields.iter().all(|f| f.is_empty()) {
                    continue;
                }
                if fields.len() > 2 {
                    return Err(list_err(
                        list,
                        format!(
                            "line {line} has {} fields; expected path[,label] (quote paths that hold the delimiter)",
                            fields.len()
                        ),
                    ));
                }
                let label = fields.get(1).map(|l| l.to_string());
                records.push((line, fields[0].to_owned(), label));
            }
        }
    }
    if records.is_empty() {
        return Err(list_err(list, "names no images; add one path per line"));
    }
    let labelled = records[0].2.as_deref().is_some_and(|l| !l.is_empty());
    if let Some((line, p, _)) = records
        .iter()
        .find(|r| r.2.as_deref().is_some_and(|l| !l.is_empty()) != labelled)
    {
        let (has, first) = if labelled {
            ("no", "has one")
        } else {
            ("a", "has none")
        };
        return Err(list_err(
            list,
            format!("line {line} ({p:?}) has {has} label, but the first record {first}; label every image or none"),
        ));
    }
    let dir = match list.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let root = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut entries: Vec<(String, Option<String>)> = Vec::with_capacity(records.len());
    for (line, p, label) in records {
        if p.is_empty() {
            return Err(list_err(list, format!("line {line} has an empty path")));
        }
        let rel = normalize_listed(&root, &p);
        if let Some(first) = seen.insert(rel.clone(), line) {
            return Err(list_err(
                list,
                format!("lines {first} and {line} both name {rel:?}; list each image once"),
            ));
        }
        entries.push((rel, label.filter(|l| !l.is_empty())));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut classes: Vec<String> = entries.iter().filter_map(|e| e.1.clone()).collect();
    classes.sort();
    classes.dedup();
    let items = entries
        .into_iter()
        .map(|(rel_path, label)| Item {
            rel_path,
            label: label.map_or(-1, |l| {
                classes.binary_search(&l).expect("every label is a class") as i64
            }),
        })
        .collect();
    Ok(Dataset {
        root,
        layout: Layout::List,
        classes,
        items,
        ignored: Vec::new(),
    })
}

/// The items of `items` whose file does not exist (a list may name files that
/// are gone; extraction records them as skipped).
pub(crate) fn missing_files<'a>(ds: &Dataset, items: &'a [Item]) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| fs::symlink_metadata(ds.abs_path(i)).is_err())
        .collect()
}

/// The text of a list: `header` (plain field names), then one record per
/// item of `records`, every field quoted.
pub fn csv_text<R, F>(header: &[&str], records: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    for r in records {
        w.write_record(r).expect("writing to memory");
    }
    let body = w.into_inner().expect("writing to memory");
    let body = String::from_utf8(body).expect("UTF-8 fields give UTF-8 text");
    header.join(",") + "\n" + &body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(ds: &Dataset) -> Vec<(&str, i64)> {
        ds.items
            .iter()
            .map(|i| (i.rel_path.as_str(), i.label))
            .collect()
    }

    #[test]
    fn lists_csv_tsv_and_lines() {
        let t = tempfile::tempdir().unwrap();
        let csv = t.path().join("l.csv");
        fs::write(
            &csv,
            "path,label\r\nz/b.jpg,dog\n./a.jpg,cat\n\"c,1.jpg\",dog\n/abs/x.png,cat\n\n",
        )
        .unwrap();
        let ds = from_list(&csv).unwrap();
        assert_eq!(ds.layout, Layout::List);
        assert_eq!(ds.root, fs::canonicalize(t.path()).unwrap());
        assert_eq!(ds.classes, ["cat", "dog"]);
        assert_eq!(
            rels(&ds),
            [
                ("/abs/x.png", 0),
                ("a.jpg", 0),
                ("c,1.jpg", 1),
                ("z/b.jpg", 1)
            ]
        );
        assert_eq!(ds.abs_path(&ds.items[0]), Path::new("/abs/x.png"));
        // Quoted fields across lines (RFC 4180), doubled quotes, a byte-order
        // mark, CRLF, a path inside the root written absolute.
        let root = fs::canonicalize(t.path()).unwrap();
        fs::write(
            &csv,
            format!(
                "\u{feff}path,label\r\n\"q\"\"1.jpg\",\"two\nlines\"\r\n{}/sub/../d.jpg,cat\r\n",
                root.display()
            ),
        )
        .unwrap();
        let ds = from_list(&csv).unwrap();
        assert_eq!(rels(&ds), [("d.jpg", 0), ("q\"1.jpg", 1)]);
        assert_eq!(ds.classes, ["cat", "two\nlines"]);
        let tsv = t.path().join("l.tsv");
        fs::write(&tsv, "b.jpg\tx\na,1.jpg\ty\n").unwrap();
        assert_eq!(
            rels(&from_list(&tsv).unwrap()),
            [("a,1.jpg", 1), ("b.jpg", 0)]
        );
        let lines = t.path().join("l.txt");
        fs::write(&lines, "b.jpg\na, b.jpg\n\n").unwrap();
        let ds = from_list(&lines).unwrap();
        assert_eq!(rels(&ds), [("a, b.jpg", -1), ("b.jpg", -1)]);
        assert!(ds.classes.is_empty());
        let missing = missing_files(&ds, &ds.items);
        assert_eq!(missing.len(), 2);
    }

    #[test]
    fn bad_lists_name_the_line() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("l.csv");
        let err = |text: &str| {
            fs::write(&l, text).unwrap();
            from_list(&l).unwrap_err().to_string()
        };
        let e = err("a.jpg,cat\nb.jpg\n");
        assert!(
            e.contains("line 2") && e.contains("label every image or none"),
            "{e}"
        );
        let e = err("a.jpg\n./a.jpg\n");
        assert!(e.contains("lines 1 and 2 both name \"a.jpg\""), "{e}");
        let e = err("a.jpg,cat,extra\n");
        assert!(e.contains("line 1 has 3 fields"), "{e}");
        // An unterminated quote used to swallow every later record silently.
        let e = err("a.jpg,cat\n\"b.jpg,dog\nc.jpg,cat\nd.jpg,dog\n");
        assert!(
            e.contains("the quote opening field 1 of line 2 is never closed"),
            "{e}"
        );
        let e = err("a.jpg,cat\nb.jpg,\"dog\n");
        assert!(e.contains("field 2 of line 2 is never closed"), "{e}");
        let e = err("a.jpg,cat\n\"b\"x.jpg,dog\n");
        assert!(
            e.contains("line 2 has text after the closing quote of field 1"),
            "{e}"
        );
        // One file under several spellings is one file.
        let root = fs::canonicalize(t.path()).unwrap();
        for other in [
            "./a.jpg".to_string(),
            "sub/../a.jpg".to_string(),
            "sub/./../a.jpg".to_string(),
            root.join("a.jpg").display().to_string(),
            format!("{}/sub/../a.jpg", root.display()),
        ] {
            let e = err(&format!("a.jpg,cat\n{other},cat\n"));
            assert!(
                e.contains("lines 1 and 2 both name \"a.jpg\""),
                "{other}: {e}"
            );
        }
        let e = err(&format!(
            "../x/b.jpg,cat\n{}/x/b.jpg,cat\n",
            root.parent().unwrap().display()
        ));
        assert!(e.contains("lines 1 and 2 both name"), "{e}");
        let e = err("path,label\n");
        assert!(e.contains("names no images"), "{e}");
        let e = from_list(&t.path().join("nope.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope.txt") && e.contains("cannot be read"),
            "{e}"
        );
    }

    #[test]
    fn every_field_is_quoted_and_reads_back() {
        assert_eq!(
            csv_text(&["path"], [["/a/b.jpg"], ["/a/x,\"y\".png"]]),
            "path\n\"/a/b.jpg\"\n\"/a/x,\"\"y\"\".png\"\n"
        );
        assert_eq!(csv_text(&["path"], Vec::<[&str; 1]>::new()), "path\n");
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("l.csv");
        let names = ["c/a,b.jpg", "c/q\"d'.jpg", "d/line\nbreak.jpg"];
        let records = names
            .iter()
            .map(|p| [*p, if p.starts_with('c') { "c" } else { "d" }]);
        std::fs::write(&list, csv_text(&["path", "label"], records)).unwrap();
        let ds = crate::images::dataset::from_list(&list).unwrap();
        let read: Vec<&str> = ds.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(read, names);
        assert_eq!(ds.classes, ["c", "d"]);
    }
}
