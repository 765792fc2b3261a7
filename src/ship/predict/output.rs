//! Output writers shared by `xfer predict`, `xfer-predict` and `xfer evaluate`:
//! the table on the terminal, the CSV of probabilities and the Kaggle
//! submission. CSV quoting is the `csv` crate's (RFC 4180: fields holding a
//! comma, a quote or a line break are quoted), so any file name gives a valid
//! file.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::error::{Error, Result};

fn csv_error(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// Writes `path,class,<one column per class>`: the predicted class and every
/// class's probability (shortest decimal that reads back as the same f32).
///
/// # Shapes
/// `probs`: [n_samples, n_classes]; `names`: [n_samples]
pub fn write_csv(
    w: &mut dyn Write,
    names: &[String],
    probs: ArrayView2<f32>,
    class_names: &[String],
) -> std::io::Result<()> {
    assert_eq!(names.len(), probs.nrows(), "one name per row");
    assert_eq!(
        class_names.len(),
        probs.ncols(),
        "one class name per column"
    );
    let mut out = csv::Writer::from_writer(w);
    let header = ["path", "class"]
        .into_iter()
        .chain(class_names.iter().map(String::as_str));
    out.write_record(header).map_err(csv_error)?;
    let mut record = Vec::with_capacity(2 + class_names.len());
    for (name, row) in names.iter().zip(probs.rows()) {
        let (k, _) = crate::train::head::argmax(row);
        record.clear();
        record.push(name.clone());
        record.push(class_names[k].clone());
        record.extend(row.iter().map(|p| p.to_string()));
        out.write_record(&record).map_err(csv_error)?;
    }
    out.flush()
}

/// The Kaggle id of an image: its file name without the extension (`test1/17.jpg` → `17`).
pub fn kaggle_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a Kaggle submission says about an image that could not be read: it
/// needs a row for every id, and 0.5 is the guess that costs least (ln 2).
pub const KAGGLE_UNREADABLE: f32 = 0.5;

/// Rows of a Kaggle submission: `(id, probability of the positive class,
/// clipped into [clip, 1 − clip])`, sorted by id (numerically when every id
/// is a number); images in `unreadable` get [`KAGGLE_UNREADABLE`]. Two images
/// with the same id are an error.
///
/// # Shapes
/// `probs`: [n_samples, n_classes]
pub fn kaggle_rows(
    paths: &[PathBuf],
    probs: ArrayView2<f32>,
    positive: usize,
    clip: f64,
    unreadable: &[PathBuf],
) -> Result<Vec<(String, f32)>> {
    let (lo, hi) = (clip as f32, (1.0 - clip) as f32);
    let mut rows: Vec<(String, f32, &Path)> = paths
        .iter()
        .zip(probs.rows())
        .map(|(p, row)| (kaggle_id(p), row[positive].clamp(lo, hi), p.as_path()))
        .chain(
            unreadable
                .iter()
                .map(|p| (kaggle_id(p), KAGGLE_UNREADABLE.clamp(lo, hi), p.as_path())),
        )
        .collect();
    // Kaggle reads ids as numbers when they all are: then `1`, `01` and `+1`
    // are one id, so numbers are what is sorted and compared.
    let numeric = rows.iter().all(|(id, ..)| id.parse::<u64>().is_ok());
    let key = |id: &str| -> (u64, String) {
        match id.parse::<u64>() {
            Ok(n) if numeric => (n, String::new()),
            _ => (0, id.to_owned()),
        }
    };
    rows.sort_by_cached_key(|(id, ..)| (key(id), id.clone()));
    for w in rows.windows(2) {
        if key(&w[0].0) == key(&w[1].0) {
            return Err(Error::DuplicateId {
                first: w[0].2.to_owned(),
                second: w[1].2.to_owned(),
                id: w[0].0.clone(),
            });
        }
    }
    Ok(rows.into_iter().map(|(id, p, _)| (id, p)).collect())
}

/// Writes `id,label` rows.
pub fn write_kaggle(w: &mut dyn Write, rows: &[(String, f32)]) -> std::io::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record(["id", "label"]).map_err(csv_error)?;
    for (id, p) in rows {
        out.write_record([id.as_str(), &p.to_string()])
            .map_err(csv_error)?;
    }
    out.flush()
}

/// The table of `xfer predict`: path, most likely class and its probability,
/// and the next `top_k − 1` classes.
///
/// # Shapes
/// `probs`: [n_samples, n_classes]; `paths`: [n_samples]
pub fn write_table(
    w: &mut dyn Write,
    paths: &[String],
    probs: ArrayView2<f32>,
    names: &[String],
    top_k: usize,
) -> std::io::Result<()> {
    let wp = paths
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let wc = names
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut header = format!("{:<wp$}  {:<wc$}  {:>11}", "path", "class", "probability");
    for k in 2..=top_k {
        header += &format!("  {:<w$}", format!("top {k}"), w = wc + 8);
    }
    writeln!(w, "{}", header.trim_end())?;
    for (path, row) in paths.iter().zip(probs.rows()) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let mut line = format!(
            "{path:<wp$}  {:<wc$}  {:>11.4}",
            names[order[0]], row[order[0]]
        );
        for &k in order.iter().take(top_k).skip(1) {
            line += &format!("  {:<wc$} {:>6.4}", names[k], row[k]);
        }
        writeln!(w, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn parse(text: &str) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn csv_quotes_only_when_needed_and_reads_back() {
        let mut out = Vec::new();
        let p = array![[0.25f32, 0.75], [0.6, 0.4], [0.5, 0.5]];
        let names = [
            "x.jpg".to_string(),
            "y,1.jpg".into(),
            "say \"hi\"\nthere.jpg".into(),
        ];
        write_csv(&mut out, &names, p.view(), &["cat".into(), "dog".into()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("path,class,cat,dog\nx.jpg,dog,0.25,0.75\n\"y,1.jpg\",cat,0.6,0.4\n"),
            "{text}"
        );
        let rows = parse(&text);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3][0], names[2]);
    }

    #[test]
    fn kaggle_rows_are_clipped_sorted_by_number_and_unique() {
        let paths: Vec<PathBuf> = ["t/10.jpg", "t/2.jpg", "t/1.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let p = array![[0.5f32, 0.5], [0.999, 0.001], [0.0, 1.0]];
        let rows = kaggle_rows(&paths, p.view(), 1, 0.005, &[]).unwrap();
        assert_eq!(
            rows,
            vec![
                ("1".to_string(), 0.995),
                ("2".to_string(), 0.005),
                ("10".to_string(), 0.5)
            ]
        );
        let mut out = Vec::new();
        write_kaggle(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,label\n1,0.995\n2,0.005\n10,0.5\n"
        );
        let dup: Vec<PathBuf> = ["a/1.jpg", "b/1.jpg"].iter().map(PathBuf::from).collect();
        let e = kaggle_rows(&dup, p.slice(ndarray::s![..2, ..]), 1, 0.0, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("both have the id 1"), "{e}");
        // Non-numeric ids sort as text; no clipping with 0; unreadable images get 0.5.
        let named: Vec<PathBuf> = ["b.jpg", "a.jpg"].iter().map(PathBuf::from).collect();
        let bad = [PathBuf::from("c.jpg")];
        let rows = kaggle_rows(&named, p.slice(ndarray::s![1.., ..]), 1, 0.0, &bad).unwrap();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), 1.0),
                ("b".to_string(), 0.001),
                ("c".to_string(), 0.5)
            ]
        );
        // Ids with commas, quotes and line breaks stay one field each.
        let odd: Vec<PathBuf> = ["t/a,b.jpg", "t/\"q\".jpg", "t/new\nline.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        // `1`, `01` and `+1` are one number: a duplicate id for Kaggle.
        let same: Vec<PathBuf> = ["t/1.jpg", "t/2.jpg", "t/01.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let e = kaggle_rows(&same, p.view(), 1, 0.0, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("both have the id"), "{e}");
        let rows = kaggle_rows(&odd, p.view(), 1, 0.0, &[]).unwrap();
        let mut out = Vec::new();
        write_kaggle(&mut out, &rows).unwrap();
        let back = parse(&String::from_utf8(out).unwrap());
        assert_eq!(back.len(), 4);
        assert!(back.iter().all(|r| r.len() == 2));
    }
}
