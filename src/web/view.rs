//! Formatting the pages share: relative times, short counts, bar charts as inline SVG.

use askama::Template;

pub use crate::api::serialize::{buckets, iso, short_id};

/// "just now", "5 min ago", "3 h ago", "4 d ago", or the date for older times.
pub fn ago(ts: f64, now: f64) -> String {
    let s = (now - ts).max(0.0) as i64;
    match s {
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86399 => format!("{} h ago", s / 3600),
        86400..=2_591_999 => format!("{} d ago", s / 86400),
        _ => iso(ts).chars().take(10).collect(),
    }
}

/// 999, 1.2k, 35k, 1.4M.
pub fn count(n: i64) -> String {
    match n {
        i64::MIN..=999 => n.to_string(),
        1000..=9_999 => format!("{:.1}k", n as f64 / 1e3),
        10_000..=999_999 => format!("{}k", n / 1000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A percentage for display: "92 %", "2.4 %", "<0.1 %".
pub fn percent(part: i64, total: i64) -> String {
    if total <= 0 {
        return "0 %".into();
    }
    let p = part as f64 * 100.0 / total as f64;
    if p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 0.1 {
        format!("{p:.1} %")
    } else {
        "<0.1 %".into()
    }
}

/// One bar of a chart, in SVG user units.
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// Tooltip: "2026-11-25 14:00 — 12 events".
    pub label: String,
}

/// A vertical line on a chart (a release first seen, a deploy).
pub struct Marker {
    pub x: f64,
    pub label: String,
    /// `release` or `deploy`: what the line marks (its class, hence its colour).
    pub kind: &'static str,
}

/// Where a [`Marker`] goes: at a time, with a tooltip, of a kind (`release`, `deploy`).
pub type Mark = (f64, String, &'static str);

/// A bar chart of counts over time, rendered as inline SVG (no script, no inline style).
#[derive(Template)]
#[template(path = "chart.svg", escape = "html")]
pub struct Chart {
    pub class: &'static str,
    pub width: f64,
    pub height: f64,
    pub bars: Vec<Bar>,
    pub markers: Vec<Marker>,
    /// Axis labels under the chart (first and last bucket); empty for sparklines.
    pub axis: Option<(String, String)>,
}

impl Chart {
    /// Bars for `(bucket_start, count)` pairs; `size` is the bucket length in seconds.
    pub fn new(
        class: &'static str,
        buckets: &[(i64, i64)],
        size: i64,
        width: f64,
        height: f64,
        markers: &[Mark],
        axis: bool,
    ) -> Chart {
        let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
        let n = buckets.len().max(1) as f64;
        let slot = width / n;
        let plot = if axis { height - 12.0 } else { height };
        let fmt = if size >= 86400 {
            "%Y-%m-%d"
        } else {
            "%Y-%m-%d %H:00"
        };
        let when = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format(fmt).to_string())
                .unwrap_or_default()
        };
        let bars = buckets
            .iter()
            .enumerate()
            .map(|(i, (start, c))| {
                let h = if *c > 0 {
                    (*c as f64 / max * plot).max(1.0)
                } else {
                    0.0
                };
                Bar {
                    x: round(i as f64 * slot + slot * 0.1),
                    y: round(plot - h),
                    w: round(slot * 0.8),
                    h: round(h),
                    label: format!("{} — {} events", when(*start), c),
                }
            })
            .collect();
        let (first, last) = (
            buckets.first().map(|b| b.0).unwrap_or(0),
            buckets.last().map(|b| b.0).unwrap_or(0),
        );
        let span = (last + size - first).max(1) as f64;
        let markers = markers
            .iter()
            .filter(|(t, _, _)| *t >= first as f64 && *t < (last + size) as f64)
            .map(|(t, label, kind)| Marker {
                x: round((t - first as f64) / span * width),
                label: label.clone(),
                kind,
            })
            .collect();
        Chart {
            class,
            width,
            height,
            bars,
            markers,
            axis: axis.then(|| (when(first), when(last))),
        }
    }

    /// A small chart of the last 24 hours for lists.
    pub fn sparkline(hourly: &[(i64, i64)], now: i64) -> Chart {
        Chart::new(
            "spark",
            &buckets(hourly, now, 3600, 24),
            3600,
            96.0,
            24.0,
            &[],
            false,
        )
    }
}

/// SVG coordinates to a tenth of a unit: plenty on screen, short in the page.
fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_counts_read_like_a_person_would_say_them() {
        assert_eq!(ago(100.0, 130.0), "just now");
        assert_eq!(ago(0.0, 300.0), "5 min ago");
        assert_eq!(ago(0.0, 7200.0), "2 h ago");
        assert_eq!(count(950), "950");
        assert_eq!(count(1250), "1.2k");
        assert_eq!(count(2_500_000), "2.5M");
        assert_eq!(percent(92, 100), "92 %");
        assert_eq!(percent(2, 100), "2.0 %");
    }

    #[test]
    fn charts_escape_their_labels_and_scale_bars() {
        let chart = Chart::new(
            "chart",
            &[(0, 1), (3600, 4)],
            3600,
            100.0,
            50.0,
            &[
                (10.0, "<script>alert(1)</script>".into(), "release"),
                (3700.0, "deploy of 1.0 to production".into(), "deploy"),
            ],
            true,
        );
        let svg = chart.render().unwrap();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("script&#62;alert(1)"), "{svg}");
        assert_eq!(chart.bars[1].h, 38.0);
        assert!(
            svg.contains(r#"class="marker deploy" x="51.4""#),
            "a deploy an hour and 100 s in: {svg}"
        );
    }
}
