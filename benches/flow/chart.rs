//! The bench's chart (SVG): init + first message and a batch of ten by memory size, this function
//! beside the Node.js peer, on a log scale (the two differ by one to two orders of magnitude).

use std::fmt::Write as _;

use crate::quota::Share;

const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 76.0;
const BOTTOM: f64 = 40.0;
const OURS: &str = "#d4572a";
const PEER: &str = "#6b7b8c";

/// One panel's figure of a subject at one memory size.
type Metric = fn(&Share) -> f64;

/// The SVG text; `note` ends the footer (the backend). `peer` may be empty (no Node.js here):
/// its bars are then left out.
pub fn svg(title: &str, note: &str, ours: &[Share], peer: &[Share]) -> String {
    let panels: [(&str, Metric); 2] = [
        ("init + first message", |s| s.init_first_ms),
        ("batch of 10, warm", |s| s.batch_ms),
    ];
    let values: Vec<f64> = ours
        .iter()
        .chain(peer)
        .flat_map(|s| panels.iter().map(move |(_, g)| g(s)))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo_exp, hi_exp) = if values.is_empty() {
        (1, 4)
    } else {
        (lo.log10().floor() as i32, hi.log10().ceil() as i32)
    };
    let span = f64::from((hi_exp - lo_exp).max(1));
    let y = |ms: f64| TOP + PANEL_H * (1.0 - (ms.log10() - f64::from(lo_exp)) / span);
    let width = LEFT + 2.0 * (PANEL_W + LEFT);
    let height = TOP + PANEL_H + BOTTOM + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    legend(&mut out, LEFT, !peer.is_empty());
    for (p, (name, value)) in panels.iter().enumerate() {
        let x0 = LEFT + p as f64 * (PANEL_W + LEFT);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{name}</text>"#,
            x0 + PANEL_W / 2.0,
            TOP - 12.0
        );
        // Log grid: one line per power of ten.
        for e in lo_exp..=hi_exp {
            let v = 10f64.powi(e);
            let gy = y(v);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" x2="{}" y1="{gy:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                x0 + PANEL_W,
                x0 - 6.0,
                gy + 4.0,
                ms_label(v)
            );
        }
        let group = PANEL_W / ours.len().max(1) as f64;
        for (i, s) in ours.iter().enumerate() {
            let gx = x0 + group * i as f64;
            let mut bars = vec![(OURS, value(s))];
            if let Some(q) = peer.get(i) {
                bars.push((PEER, value(q)));
            }
            let bw = group * 0.3;
            for (b, (colour, v)) in bars.iter().enumerate() {
                let bx = gx + group * 0.18 + b as f64 * (bw + 4.0);
                if !(v.is_finite() && *v > 0.0) {
                    continue;
                }
                let top = y(*v);
                let _ = writeln!(
                    out,
                    r#"<rect x="{bx:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                    TOP + PANEL_H - top,
                    bx + bw / 2.0,
                    top - 4.0,
                    ms_label(*v)
                );
            }
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{} MB</text>"#,
                gx + group / 2.0,
                TOP + PANEL_H + 18.0,
                s.memory_mb
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##,
            x0 + PANEL_W,
            TOP + PANEL_H,
            TOP + PANEL_H
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}" fill="#555">CPU share = memory ÷ 1,769 MB of a vCPU (CFS quota) · log scale · 50 ms per Portal call · {}</text>"##,
        height - 8.0,
        escape(note)
    );
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String, x: f64, with_peer: bool) {
    let mut items = vec![(OURS, "portal-backup (Rust)")];
    if with_peer {
        items.push((PEER, "Node.js 20, the seed's flow"));
    }
    // One row under the title.
    let ly = 42.0;
    for (i, (colour, name)) in items.iter().enumerate() {
        let lx = x + 220.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{ly}">{name}</text>"#,
            ly - 10.0,
            lx + 18.0
        );
    }
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
