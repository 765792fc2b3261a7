//! The page of `xfer audit --report DIR`: `DIR/audit.html`, one
//! self-contained file in the evaluation report's style (same inline styles,
//! thumbnails as JPEG `data:` URIs from [`crate::eval::report::thumbs`]). Sections:
//! `leakage` and `duplicates` (the pairs side by side, with their
//! similarity), `labels` (each flagged image with its given and suggested
//! class) and `outliers`. At most [`MAX_SHOWN`] items per section; the CSV
//! and JSON hold them all. Unreadable images show the reason in their place.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;

use super::{Audit, RowRef, Splits};
use crate::eval::report::html::STYLE;
use crate::eval::report::{escape, thumbs};

/// Items shown per section.
pub(crate) const MAX_SHOWN: usize = 48;

/// The page as a string. Images are read from each split's dataset root, or `image_root`.
pub fn page(audit: &Audit, splits: &Splits, image_root: Option<&Path>) -> String {
    let figures = Figures {
        thumbs: thumbnails(audit, splits, image_root),
    };
    let mut h = String::with_capacity(64 << 10);
    head(&mut h);
    summary(&mut h, audit);
    for (id, title, leak) in [
        ("leakage", "Leakage: the same image in two splits", true),
        ("duplicates", "Duplicates within a split", false),
    ] {
        pairs(&mut h, audit, &figures, (id, title, leak));
    }
    label_issues(&mut h, audit, &figures);
    outliers(&mut h, audit, &figures);
    let _ = writeln!(
        h,
        "<footer>Written by xfer {} (<code>xfer audit --report</code>). One self-contained file: no scripts, fonts or network; thumbnails (at most {} px) are embedded JPEGs. At most {MAX_SHOWN} items per section; <code>--csv</code> and <code>--json</code> list them all.</footer>\n</body>\n</html>",
        crate::VERSION,
        thumbs::MAX_SIDE
    );
    h
}

/// The thumbnail (a `data:` URI) of every row shown, or why there is none; each made once.
fn thumbnails(
    audit: &Audit,
    splits: &Splits,
    image_root: Option<&Path>,
) -> HashMap<usize, Result<String, String>> {
    let mut wanted: Vec<usize> = Vec::new();
    wanted.extend(
        audit
            .duplicates
            .iter()
            .take(MAX_SHOWN)
            .flat_map(|d| [d.global.0, d.global.1]),
    );
    wanted.extend(audit.label_issues.iter().take(MAX_SHOWN).map(|l| l.global));
    wanted.extend(audit.outliers.iter().take(MAX_SHOWN).map(|o| o.global));
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .par_iter()
        .map(|&g| {
            let t = match splits.image_file(g, image_root) {
                Some(p) => thumbs::data_uri(&p, thumbs::MAX_SIDE).map_err(|e| e.to_string()),
                None => Err("no image path recorded (tutorial layout)".into()),
            };
            (g, t)
        })
        .collect()
}

/// The thumbnails, by global row, that the page's figures show.
struct Figures {
    thumbs: HashMap<usize, Result<String, String>>,
}

impl Figures {
    /// A row's `<figure>`: its thumbnail (or why there is none) and its caption with `extra`.
    fn figure(&self, h: &mut String, g: usize, r: &RowRef, extra: &str) {
        h.push_str("<figure>");
        match self.thumbs.get(&g) {
            Some(Ok(uri)) => {
                let _ = write!(h, "<img src=\"{uri}\" alt=\"{}\">", escape(&r.path));
            }
            Some(Err(why)) => {
                let _ = write!(h, "<div class=\"noimg\">{}</div>", escape(why));
            }
            None => {}
        }
        let _ = write!(
            h,
            "<figcaption>{}{extra}<br><span class=\"path\">{} · {}</span></figcaption>",
            r.label
                .as_ref()
                .map_or("unlabelled".to_string(), |l| format!(
                    "given <b>{}</b>",
                    escape(l)
                )),
            escape(&r.split),
            escape(&r.path)
        );
        h.push_str("</figure>");
    }
}

/// The document's head: the report's style and the pair layout.
fn head(h: &mut String) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"xfer {}\">\n<title>xfer audit</title>\n\
         <style>{STYLE}\n.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }}\n\
         .pairs {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }}\n\
         .card {{ border: 1px solid #d6d6d6; border-radius: 6px; padding: 6px; }}\n</style>\n</head>\n<body>\n",
        crate::VERSION
    );
}

/// The header with the counts, the section links and the audit's notes.
fn summary(h: &mut String, audit: &Audit) {
    let split_list = audit
        .splits
        .iter()
        .map(|s| {
            format!(
                "<code>{}</code> ({} rows{})",
                escape(&s.name),
                s.n_rows,
                if s.labelled { "" } else { ", unlabelled" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        h,
        "<header>\n<h1>What is wrong with the data</h1>\n<p class=\"sub\">{} rows in {}; {} label issue(s), {} leaking pair(s) across splits, {} duplicate pair(s) within a split, {} outlier(s).</p>\n</header>",
        audit.n_rows,
        split_list,
        audit.label_issues.len(),
        audit.n_leaks(),
        audit.duplicates.len() - audit.n_leaks(),
        audit.outliers.len()
    );
    h.push_str(
        "<nav><a href=\"#leakage\">Leakage</a><a href=\"#duplicates\">Duplicates</a>\
          <a href=\"#labels\">Label issues</a><a href=\"#outliers\">Outliers</a></nav>\n",
    );
    for note in &audit.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
    }
}

/// The section of the duplicate pairs that cross splits (`leak`) or do not, side by side.
fn pairs(h: &mut String, audit: &Audit, figures: &Figures, (id, title, leak): (&str, &str, bool)) {
    let list: Vec<_> = audit
        .duplicates
        .iter()
        .filter(|d| d.leakage == leak)
        .collect();
    let _ = writeln!(
        h,
        "<section id=\"{id}\">\n<h2>{title} ({})</h2>",
        list.len()
    );
    let _ = writeln!(
        h,
        "<p class=\"sub\">Pairs whose features have cosine similarity ≥ {} (<code>--threshold</code>), or whose files have the same bytes (<b>exact</b>). {}</p>",
        audit.threshold,
        if leak {
            "A test or validation image that is also in training makes the held-out scores too good: remove one of each pair."
        } else {
            "Keep one of each pair (or all, if they are distinct photos)."
        }
    );
    h.push_str("<div class=\"pairs\">\n");
    for d in list.iter().take(MAX_SHOWN) {
        h.push_str("<div class=\"card\"><div class=\"pair\">");
        for (g, r) in [(d.global.0, &d.a), (d.global.1, &d.b)] {
            figures.figure(h, g, r, "");
        }
        let _ = writeln!(
            h,
            "</div><p class=\"sub\">{} · similarity {:.4}{}</p></div>",
            d.kind,
            d.similarity,
            if d.labels_differ {
                " · <b>different classes</b>"
            } else {
                ""
            }
        );
    }
    h.push_str("</div>\n</section>\n");
}

/// The section of the flagged labels: each image with its given and suggested class.
fn label_issues(h: &mut String, audit: &Audit, figures: &Figures) {
    let _ = writeln!(
        h,
        "<section id=\"labels\">\n<h2>Label issues ({} of {} checked)</h2>\n<p class=\"sub\">Confident learning (cleanlab's <code>find_label_issues</code>, prune by noise rate) on out-of-fold probabilities {}; ranked by {}, lowest first.</p>\n<div class=\"gallery\">",
        audit.label_issues.len(),
        audit.n_label_checked,
        escape(&audit.probabilities),
        match audit.rank_by {
            super::confident::RankBy::SelfConfidence => "self-confidence (p of the given class)",
            super::confident::RankBy::NormalizedMargin => "normalised margin",
        }
    );
    for l in audit.label_issues.iter().take(MAX_SHOWN) {
        let extra = format!(
            " (p&nbsp;{:.2})<br>suggested <b>{}</b> (p&nbsp;{:.2})",
            l.p_given,
            escape(&l.suggested),
            l.p_suggested
        );
        figures.figure(h, l.global, &l.row, &extra);
        h.push('\n');
    }
    h.push_str("</div>\n</section>\n");
}

/// The section of the outliers, each with its score.
fn outliers(h: &mut String, audit: &Audit, figures: &Figures) {
    let _ = writeln!(
        h,
        "<section id=\"outliers\">\n<h2>Outliers ({})</h2>\n<p class=\"sub\">Score: 1 − the mean cosine similarity to the {} nearest images; flagged above {:.4} (the third quartile + 1.5 × the interquartile range of all scores). Off-topic, corrupt or unusual images.</p>\n<div class=\"gallery\">",
        audit.outliers.len(),
        audit.k,
        audit.outlier_fence
    );
    for o in audit.outliers.iter().take(MAX_SHOWN) {
        figures.figure(h, o.global, &o.row, &format!(" · score {:.3}", o.score));
        h.push('\n');
    }
    h.push_str("</div>\n</section>\n");
}
