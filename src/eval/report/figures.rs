//! The report's figures: the confusion matrix (a coloured grid, or the top
//! confusions for many classes) and the reliability diagram (SVG).

use std::fmt::Write as _;

use super::html::N_BINS;
use super::{escape, pct, BLUE, VERMILLION};
use crate::eval::metrics::{Evaluation, Reliability};
use crate::util::format::fixed;

/// Matplotlib's viridis at 0, 0.1, …, 1.
const VIRIDIS: [[u8; 3]; 11] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x24, 0x75],
    [0x41, 0x44, 0x87],
    [0x35, 0x5f, 0x8d],
    [0x2a, 0x78, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x22, 0xa8, 0x84],
    [0x44, 0xbf, 0x70],
    [0x7a, 0xd1, 0x51],
    [0xbd, 0xdf, 0x26],
    [0xfd, 0xe7, 0x25],
];

/// Viridis at `t` ∈ [0, 1] (linear between its tabulated colours).
fn viridis(t: f64) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * 10.0;
    let i = (x.floor() as usize).min(9);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|c| (a[c] as f64 + f * (b[c] as f64 - a[c] as f64)).round() as u8)
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Black or white, whichever contrasts more with `bg` (WCAG relative luminance).
fn ink(bg: [u8; 3]) -> &'static str {
    let lin = |v: u8| {
        let v = v as f64 / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(bg[0]) + 0.7152 * lin(bg[1]) + 0.0722 * lin(bg[2]);
    // contrast with black (l + 0.05) / 0.05 vs with white 1.05 / (l + 0.05)
    if (l + 0.05) * (l + 0.05) > 0.0525 {
        "#000"
    } else {
        "#fff"
    }
}

/// The colour of a cell holding `share` of its true class's rows: viridis
/// reversed, so more is darker; pale yellow for a few, white for none.
fn cell_colour(share: f64) -> [u8; 3] {
    viridis(1.0 - share)
}

/// The most classes drawn as a grid; with more, the page lists the most
/// frequent confusions instead (1,000 classes would be a million cells).
pub(crate) const MAX_GRID_CLASSES: usize = 40;
/// How many confusions that list shows.
const TOP_CONFUSIONS: usize = 30;

/// The off-diagonal cells with rows, most rows first (ties: by true, then
/// predicted class): `(true, predicted, count)`.
pub(crate) fn top_confusions(confusion: &[Vec<usize>], k: usize) -> Vec<(usize, usize, usize)> {
    let mut v: Vec<(usize, usize, usize)> = confusion
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(p, &n)| p != t && n > 0)
                .map(move |(p, &n)| (t, p, n))
        })
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    v.truncate(k);
    v
}

pub(super) fn confusion(h: &mut String, e: &Evaluation) {
    let n = e.class_names.len();
    if n > MAX_GRID_CLASSES {
        let top = top_confusions(&e.confusion, TOP_CONFUSIONS);
        let _ = writeln!(
            h,
            "<section id=\"confusion\">\n<h3>Most frequent confusions</h3>\n<p class=\"note\">{n} \
             classes are too many for a readable grid ({} cells): these are its fullest \
             off-diagonal cells, the whole matrix is in <code>xfer evaluate --json</code>.</p>",
            n * n
        );
        h.push_str("<div class=\"wrap\"><table>\n<tr><th class=\"l\">true</th><th class=\"l\">predicted</th><th>rows</th><th>of the true class</th></tr>\n");
        for (t, p, c) in top {
            let total: usize = e.confusion[t].iter().sum();
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"num\">{c}</td><td class=\"num\">{}</td></tr>",
                escape(&e.class_names[t]),
                escape(&e.class_names[p]),
                pct(Some(c as f64 / total.max(1) as f64))
            );
        }
        h.push_str("</table></div>\n</section>\n");
        return;
    }
    h.push_str(
        "<section id=\"confusion\">\n<h3>Confusion matrix</h3>\n\
                <div class=\"wrap\"><table class=\"cm\">\n<tr><th></th>",
    );
    for n in &e.class_names {
        let _ = write!(h, "<th class=\"col\">{}</th>", escape(n));
    }
    h.push_str("</tr>\n");
    for (t, row) in e.confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        let _ = write!(
            h,
            "<tr><th class=\"row\">{}</th>",
            escape(&e.class_names[t])
        );
        for (p, &n) in row.iter().enumerate() {
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let (bg, fg) = if n == 0 {
                ("#ffffff".to_string(), "#999")
            } else {
                let c = cell_colour(share);
                (hex(c), ink(c))
            };
            let _ = write!(
                h,
                "<td{} style=\"background:{bg};color:{fg}\" title=\"true {}, predicted {}: {n} of {total} ({})\">{n}</td>",
                if p == t { " class=\"diag\"" } else { "" },
                escape(&e.class_names[t]),
                escape(&e.class_names[p]),
                pct((total > 0).then_some(share))
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n<div class=\"legend\">share of the true class's rows: 0 %");
    for i in 0..=10 {
        let _ = write!(
            h,
            "<span class=\"sw\" style=\"background:{}\"></span>",
            hex(cell_colour(i as f64 / 10.0))
        );
    }
    h.push_str("100 %</div>\n<p class=\"sub\">Rows: the true class; columns: the predicted \
                class. Each cell prints its count; its colour is the share of the true class's rows \
                (viridis: readable with any common colour-vision deficiency and in greyscale). The \
                diagonal (right answers) is outlined.</p>\n</section>\n");
}

/// The reliability diagram: observed accuracy per confidence bin (bars),
/// each bin's mean confidence (a tick), the diagonal, and the bin counts
/// (numbers over the bars and a histogram below).
pub(crate) fn reliability_svg(r: &Reliability) -> String {
    let (w, hgt) = (600.0, 510.0);
    let (px, py, pw, ph) = (70.0, 44.0, 500.0, 300.0);
    let (hy, hh) = (py + ph + 76.0, 70.0);
    let sx = |x: f64| px + x * pw;
    let sy = |y: f64| py + ph - y * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hgt}" viewBox="0 0 {w} {hgt}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" role="img" aria-label="reliability diagram">"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="22" font-size="15" font-weight="bold" text-anchor="middle">Reliability: ECE = {}</text>"##,
        px + pw / 2.0,
        fixed(r.ece, 4)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="white" stroke="#444"/>"##
    );
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{px}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{v:.1}</text>"##,
            px + pw,
            px - 6.0,
            sy(v) + 4.0,
            y = sy(v)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{v:.1}</text>"##,
            py + ph,
            py + ph + 5.0,
            py + ph + 19.0,
            x = sx(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">predicted probability of the top class</text>"##,
        px + pw / 2.0,
        py + ph + 38.0
    );
    let _ = writeln!(
        s,
        r##"<text x="18" y="{y:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 18 {y:.1})">observed accuracy</text>"##,
        y = py + ph / 2.0
    );
    let max_count = r.bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for b in &r.bins {
        let (x0, x1) = (sx(b.lo) + 2.0, sx(b.hi) - 2.0);
        if let (Some(acc), Some(conf)) = (b.accuracy, b.confidence) {
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{BLUE}" fill-opacity="0.85"><title>{}–{}: {} rows, accuracy {}, mean confidence {}</title></rect>"##,
                sy(acc),
                x1 - x0,
                acc * ph,
                fixed(b.lo, 1),
                fixed(b.hi, 1),
                b.count,
                fixed(acc, 3),
                fixed(conf, 3)
            );
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="{VERMILLION}" stroke-width="3"/>"##,
                y = sy(conf)
            );
        }
        // the histogram of counts
        let bh = b.count as f64 / max_count as f64 * hh;
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#7f7f7f"/>"##,
            hy + hh - bh,
            x1 - x0
        );
        if b.count > 0 {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                (x0 + x1) / 2.0,
                hy + hh - bh - 3.0,
                b.count
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-dasharray="5,4"/>"##,
        sx(0.0),
        sy(0.0),
        sx(1.0),
        sy(1.0)
    );
    let _ = writeln!(
        s,
        r##"<line x1="{px}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#444"/>"##,
        px + pw,
        y = hy + hh
    );
    let _ = writeln!(
        s,
        r##"<text x="{px}" y="{:.1}" font-size="12">rows per bin ({} in all)</text>"##,
        hy - 16.0,
        r.n_samples
    );
    // legend, top left inside the plot
    let (lx, ly) = (px + 10.0, py + 10.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="232" height="64" fill="white" fill-opacity="0.9" stroke="#bbb"/>
<rect x="{:.1}" y="{:.1}" width="18" height="11" fill="{BLUE}" fill-opacity="0.85"/><text x="{:.1}" y="{:.1}" font-size="12">observed accuracy</text>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{VERMILLION}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">mean predicted probability</text>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" font-size="12">perfect calibration</text>"##,
        lx + 8.0,
        ly + 7.0,
        lx + 32.0,
        ly + 17.0,
        lx + 8.0,
        ly + 32.0,
        lx + 26.0,
        ly + 32.0,
        lx + 32.0,
        ly + 36.0,
        lx + 8.0,
        ly + 51.0,
        lx + 26.0,
        ly + 51.0,
        lx + 32.0,
        ly + 55.0
    );
    s += "</svg>\n";
    s
}

pub(super) fn reliability(h: &mut String, r: &Reliability) {
    let _ = writeln!(
        h,
        "<section id=\"reliability\">\n<h2>Calibration: reliability diagram</h2>\n\
         <div class=\"pair\">\n{}<div class=\"explain\"><p>The predicted probability of the top \
         class, in {N_BINS} bins of width 0.1 (bars), against how often the top class is right \
         in each bin. A calibrated head's bars reach the diagonal; bars below it are \
         over-confident, above it under-confident. The vermillion tick is the bin's mean \
         predicted probability; the grey histogram counts the rows in each bin.</p>\n\
         <p>Expected calibration error (ECE), the gap between the two weighted by the rows in \
         each bin: <b>{}</b>. Few rows make a bar noisy: look at the counts.</p></div>\n</div>\n</section>",
        reliability_svg(r),
        fixed(r.ece, 4)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics;
    use ndarray::array;

    #[test]
    fn many_classes_list_the_fullest_confusions_instead_of_a_grid() {
        let cm = vec![vec![5, 2, 0], vec![3, 1, 2], vec![0, 2, 9]];
        assert_eq!(top_confusions(&cm, 3), [(1, 0, 3), (0, 1, 2), (1, 2, 2)]);
        let n = MAX_GRID_CLASSES + 1;
        let names: Vec<String> = (0..n).map(|i| format!("c<{i}>")).collect();
        let labels: Vec<usize> = (0..n).collect();
        let probs = ndarray::Array2::from_shape_fn((n, n), |(r, c)| {
            if c == (r + 1) % n {
                0.9
            } else {
                0.1 / (n - 1) as f32
            }
        });
        let e = metrics::evaluate(probs.view(), &labels, &names, None);
        let mut h = String::new();
        confusion(&mut h, &e);
        assert!(h.contains("Most frequent confusions"));
        assert!(!h.contains("class=\"cm\""));
        assert_eq!(h.matches("<tr>").count(), 1 + TOP_CONFUSIONS);
        assert!(h.contains("c&lt;0&gt;") && !h.contains("c<0>"));
    }

    #[test]
    fn viridis_ends_and_ink_contrast() {
        assert_eq!(hex(viridis(0.0)), "#440154");
        assert_eq!(hex(viridis(1.0)), "#fde725");
        assert_eq!(hex(viridis(0.55)), hex([0x22, 0x9d, 0x88]));
        assert_eq!(ink(viridis(0.0)), "#fff");
        assert_eq!(ink(viridis(1.0)), "#000");
        // more of the class is darker
        let lum = |c: [u8; 3]| c.iter().map(|&v| v as u32).sum::<u32>();
        assert!(lum(cell_colour(1.0)) < lum(cell_colour(0.1)));
    }

    #[test]
    fn reliability_svg_draws_bars_counts_and_diagonal() {
        let p = array![[0.95f32, 0.05], [0.65, 0.35], [0.62, 0.38]];
        let r = metrics::reliability(p.view(), &[0, 0, 1], N_BINS);
        let svg = reliability_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("ECE = "));
        assert!(svg.contains("stroke-dasharray=\"5,4\""), "the diagonal");
        // two non-empty bins: two accuracy bars with their tooltips
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("0.6–0.7: 2 rows"));
    }
}
