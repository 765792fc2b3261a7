//! Writing image lists: `path[,label]` records as [`crate::images::dataset::from_list`]
//! reads them. The header is written plain; every record's fields are quoted
//! (the `csv` crate's RFC 4180 quoting: a `"` inside is written twice), so any
//! file name, with commas, quotes or line breaks, reads back as it was.

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
