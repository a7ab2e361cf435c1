//! The page's charts, drawn at report time as inline SVG by plotters' SVG
//! backend: the alert timeline (one lane per rule), each windowed rule's
//! keys' values over time against its threshold with the firing periods
//! shaded, and each sequence rule's steps joined in time. Every mark with
//! something to say is a circle (or, for a firing period, a rectangle of
//! opacity [`SHADE`]); [`with_titles`] then gives the n-th such element
//! plotters wrote the n-th title (shown on hover) and link, in the order
//! the marks were drawn.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::{KeySeries, ReportData, RuleData};
use crate::event::time;

/// Plotters could not draw a chart.
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

fn fail(chart: &'static str) -> impl Fn(String) -> ChartError {
    move |message| ChartError { chart, message }
}

/// The opacity of a firing period's shading, which no other rectangle has.
pub const SHADE: f64 = 0.15;

/// A mark's hover text and the in-page anchor it links to.
pub struct Mark {
    pub title: String,
    pub href: Option<String>,
}

/// The colour of a priority: red for the most severe, grey for the least.
pub fn priority_colour(priority: &str) -> RGBColor {
    match priority {
        "Emergency" | "Alert" | "Critical" => RGBColor(0xb2, 0x18, 0x2b),
        "Error" => RGBColor(0xe6, 0x61, 0x01),
        "Warning" => RGBColor(0xd9, 0x9a, 0x00),
        "Notice" => RGBColor(0x21, 0x66, 0xac),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0xa6, 0x1e),
    RGBColor(0xa6, 0x76, 0x1d),
];

/// `HH:MM:SS` of a time given as seconds after `origin_ns`.
/// `HH:MM:SS` of a time given as seconds after `origin_ns`; on an axis
/// spanning less than ten seconds, with milliseconds.
fn clock(origin_ns: i64, seconds: f64, span: f64) -> String {
    let t = time::format_clock(origin_ns + (seconds * 1e9) as i64);
    let keep = if span < 10.0 { 12 } else { 8 };
    t.chars().take(keep).collect()
}

fn escape(s: &str) -> String {
    super::html::escape(s)
}

/// Gives the n-th `<tag …/>` of `svg` that contains `with` the n-th mark's
/// `<title>`, and wraps it in an `<a href>` when the mark links somewhere.
pub fn with_titles(svg: &str, tag: &str, with: &str, marks: &[Mark]) -> String {
    let mut out = String::with_capacity(svg.len() + marks.len() * 64);
    let mut rest = svg;
    let mut marks = marks.iter();
    let open = format!("<{tag}");
    while let Some(at) = rest.find(&open) {
        let Some(end) = rest[at..].find("/>") else {
            break;
        };
        out.push_str(&rest[..at]);
        let circle = &rest[at..at + end];
        let mark = if circle.contains(with) {
            marks.next()
        } else {
            None
        };
        match mark {
            None => {
                out.push_str(circle);
                out.push_str("/>");
            }
            Some(m) => {
                if let Some(h) = &m.href {
                    out.push_str(&format!("<a href=\"{}\">", escape(h)));
                }
                out.push_str(&format!(
                    "{circle}><title>{}</title></{tag}>",
                    escape(&m.title)
                ));
                if m.href.is_some() {
                    out.push_str("</a>");
                }
            }
        }
        rest = &rest[at + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The id of a rule's section on the page.
pub fn rule_anchor(index: usize) -> String {
    format!("rule-{index}")
}

/// The id of the `j`-th listed alert of the page's `rule`-th rule.
pub fn alert_anchor(rule: usize, j: usize) -> String {
    format!("alert-{rule}-{j}")
}

/// Where a mark of `rule`'s alert `j` links to: the alert if it is listed,
/// else the rule's section.
fn link(rule: usize, j: Option<usize>) -> Option<String> {
    Some(format!(
        "#{}",
        j.map_or_else(|| rule_anchor(rule), |j| alert_anchor(rule, j))
    ))
}

/// The timeline: one lane per rule, a circle per bucket with alerts (its
/// size grows with the count), coloured by the rule's priority.
pub fn timeline(data: &ReportData) -> Result<String, ChartError> {
    let lanes = &data.rules;
    let Some(origin) = lanes
        .iter()
        .flat_map(|r| r.buckets.first())
        .map(|b| b.start_ns)
        .min()
    else {
        return Ok(String::new());
    };
    let end = lanes
        .iter()
        .flat_map(|r| r.buckets.last())
        .map(|b| b.end_ns)
        .max()
        .unwrap_or(origin + 1);
    let span = ((end - origin) as f64 / 1e9).max(1.0);
    let n = lanes.len() as i32;
    let height = 60 + 22 * lanes.len() as u32;
    let mut svg = String::new();
    let mut marks = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| fail("timeline")(e.to_string());
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(330)
            .build_cartesian_2d(0f64..span, (0..n).into_segmented())
            .map_err(err)?;
        let names: Vec<String> = lanes
            .iter()
            .map(|r| {
                let mut s: String = r.name.chars().take(44).collect();
                s.push_str(&format!(" ({})", r.alerts));
                s
            })
            .collect();
        chart
            .configure_mesh()
            .label_style(("sans-serif", 12))
            .y_labels(lanes.len() * 2 + 1)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    names.get((n - 1 - i) as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_labels(8)
            .x_label_formatter(&|s| clock(origin, *s, span))
            .x_desc("event time (UTC)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (i, rule) in lanes.iter().enumerate() {
            let colour = priority_colour(rule.priority);
            let y = n - 1 - i as i32;
            let circles = rule.buckets.iter().map(|b| {
                let x = ((b.start_ns + b.end_ns) / 2 - origin) as f64 / 1e9;
                let r = 3 + (b.count as f64).log2().max(0.0).round() as u32 * 2;
                Circle::new(
                    (x.min(span), SegmentValue::CenterOf(y)),
                    r.min(10),
                    colour.filled(),
                )
            });
            chart.draw_series(circles).map_err(err)?;
            for b in &rule.buckets {
                let click = match b.alert {
                    Some(_) if b.count > 1 => "click for the first one's events",
                    Some(_) => "click for its events",
                    None => "click for the rule's alerts",
                };
                marks.push(Mark {
                    title: format!(
                        "{}: {} alert(s) {} to {} ({click})\n{}",
                        rule.name,
                        b.count,
                        time::format_rfc3339_nanos(b.start_ns),
                        time::format_rfc3339_nanos(b.end_ns),
                        b.first_output
                    ),
                    href: link(i, b.alert),
                });
            }
        }
        root.present().map_err(err)?;
    }
    Ok(with_titles(&svg, "circle", "", &marks))
}

/// A windowed rule (the page's `index`-th rule): each key drawn as its value
/// over time (a step line through the evaluated ticks), the threshold, the
/// firing periods shaded, and a mark at each alert.
pub fn windowed(rule: &RuleData, index: usize) -> Result<String, ChartError> {
    let keys: &[KeySeries] = &rule.keys;
    let times = keys.iter().flat_map(|k| {
        k.points
            .iter()
            .map(|p| p.0)
            .chain(k.alerts.iter().map(|p| p.0))
            .chain(k.periods.iter().flat_map(|p| [Some(p.0), p.1]).flatten())
    });
    let Some(origin) = times.clone().min() else {
        return Ok(String::new());
    };
    let last = times.max().unwrap_or(origin);
    let span = ((last - origin) as f64 / 1e9).max(1.0) * 1.05;
    let top = keys
        .iter()
        .flat_map(|k| [k.peak, k.threshold])
        .fold(1.0f64, f64::max)
        * 1.2;
    let threshold = keys.first().map_or(0.0, |k| k.threshold);
    let x = |t: i64| (t - origin) as f64 / 1e9;
    let mut svg = String::new();
    let mut shades = Vec::new();
    let mut marks = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 300)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| fail("windowed")(e.to_string());
        root.fill(&WHITE).map_err(err)?;
        // The keys' legend beside the chart, where it hides no line.
        let (plot, legend) = root.split_horizontally(820);
        let entries = std::iter::once((format!("threshold {threshold}"), RED, 1)).chain(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.key.clone(), PALETTE[i % PALETTE.len()], 2)),
        );
        for (i, (label, colour, width)) in entries.enumerate() {
            let y = 24 + 18 * i as i32;
            legend
                .draw(&PathElement::new(
                    vec![(8, y), (28, y)],
                    colour.stroke_width(width),
                ))
                .map_err(err)?;
            let label: String = label.chars().take(38).collect();
            legend
                .draw(&Text::new(label, (34, y - 6), ("sans-serif", 12)))
                .map_err(err)?;
        }
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..span, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 12))
            .x_labels(8)
            .x_label_formatter(&|s| clock(origin, *s, span))
            .x_desc("event time (UTC)")
            .y_desc("value")
            .draw()
            .map_err(err)?;
        for (i, k) in keys.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(k.periods.iter().map(|(s, e)| {
                    Rectangle::new(
                        [(x(*s), 0.0), (x(e.unwrap_or(last)), top)],
                        colour.mix(SHADE).filled(),
                    )
                }))
                .map_err(err)?;
            for (s, e) in &k.periods {
                shades.push(Mark {
                    title: format!(
                        "{}: firing from {} {}",
                        k.key,
                        time::format_rfc3339_nanos(*s),
                        e.map_or("to the end of the replay".to_string(), |e| format!(
                            "to {}",
                            time::format_rfc3339_nanos(e)
                        ))
                    ),
                    href: None,
                });
            }
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, threshold), (span, threshold)],
                RED.stroke_width(1),
            ))
            .map_err(err)?;
        for (i, k) in keys.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            // The value holds from one evaluated tick to the next.
            let steps = k.points.iter().enumerate().flat_map(|(j, p)| {
                let before = j.checked_sub(1).map(|b| (x(p.0), k.points[b].1));
                before.into_iter().chain([(x(p.0), p.1)])
            });
            chart
                .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
                .map_err(err)?;
        }
        // The alerts' marks last, so that their order is the titles' order.
        for (i, k) in keys.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(
                    k.alerts
                        .iter()
                        .map(|p| Circle::new((x(p.0), p.1), 4, colour.filled())),
                )
                .map_err(err)?;
            for p in &k.alerts {
                let listed = rule.listed.iter().position(|l| {
                    l.time_ns == p.0
                        && l.key.as_deref() == Some(k.key.as_str())
                        && (l.state == Some("firing")) == p.2
                });
                marks.push(Mark {
                    title: format!(
                        "{}: {} {} at {} (threshold {}, window {}){}",
                        k.key,
                        if p.2 { "fired with" } else { "resolved at" },
                        p.1,
                        time::format_rfc3339_nanos(p.0),
                        k.threshold,
                        k.window,
                        if listed.is_some() {
                            "; click for its events"
                        } else {
                            ""
                        }
                    ),
                    href: listed.and_then(|j| link(index, Some(j))),
                });
            }
        }
        root.present().map_err(err)?;
    }
    let svg = with_titles(&svg, "rect", &format!("opacity=\"{SHADE}\""), &shades);
    Ok(with_titles(&svg, "circle", "", &marks))
}

/// A sequence rule (the page's `index`-th rule): one row per completed
/// sequence, its steps' events as circles joined by a line in time order.
pub fn sequences(rule: &RuleData, index: usize) -> Result<String, ChartError> {
    let seqs = &rule.sequences;
    let Some(origin) = seqs.iter().flat_map(|s| s.steps.iter().map(|t| t.1)).min() else {
        return Ok(String::new());
    };
    let last = seqs
        .iter()
        .flat_map(|s| s.steps.iter().map(|t| t.1))
        .max()
        .unwrap_or(origin);
    let span = ((last - origin) as f64 / 1e9).max(1.0) * 1.05;
    let n = seqs.len() as i32;
    let x = |t: i64| (t - origin) as f64 / 1e9;
    let mut svg = String::new();
    let mut marks = Vec::new();
    {
        let height = 90 + 26 * seqs.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| fail("sequence")(e.to_string());
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = seqs
            .iter()
            .map(|s| s.key.chars().take(40).collect())
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(280)
            .build_cartesian_2d(0f64..span, (0..n).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 12))
            .y_labels(seqs.len() * 2 + 1)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_labels(8)
            .x_label_formatter(&|s| clock(origin, *s, span))
            .x_desc("event time (UTC)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let colour = priority_colour(rule.priority);
        for (i, s) in seqs.iter().enumerate() {
            let y = SegmentValue::CenterOf(i as i32);
            chart
                .draw_series(LineSeries::new(
                    s.steps.iter().map(|t| (x(t.1), y.clone())),
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
        }
        for (i, s) in seqs.iter().enumerate() {
            let y = SegmentValue::CenterOf(i as i32);
            chart
                .draw_series(
                    s.steps
                        .iter()
                        .map(|t| Circle::new((x(t.1), y.clone()), 5, colour.filled())),
                )
                .map_err(err)?;
            for t in &s.steps {
                marks.push(Mark {
                    title: format!(
                        "{}: step {} at {}{} (within {})",
                        s.key,
                        t.0,
                        time::format_rfc3339_nanos(t.1),
                        t.2.as_ref()
                            .map(|a| format!(", auditID {a}"))
                            .unwrap_or_default(),
                        s.within
                    ),
                    href: s.alert.and_then(|j| link(index, Some(j))),
                });
            }
        }
        root.present().map_err(err)?;
    }
    Ok(with_titles(&svg, "circle", "", &marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_go_to_circles_in_order_and_links_wrap_them() {
        let svg =
            "<svg><rect/>\n<circle cx=\"1\"/>\n<circle cx=\"2\"/>\n<circle cx=\"3\"/>\n</svg>";
        let marks = [
            Mark {
                title: "a<b".into(),
                href: Some("#rule-0".into()),
            },
            Mark {
                title: "second".into(),
                href: None,
            },
        ];
        let out = with_titles(svg, "circle", "", &marks);
        assert_eq!(
            out,
            "<svg><rect/>\n<a href=\"#rule-0\"><circle cx=\"1\"><title>a&lt;b</title></circle></a>\n<circle cx=\"2\"><title>second</title></circle>\n<circle cx=\"3\"/>\n</svg>"
        );
    }

    #[test]
    fn titles_go_only_to_the_elements_with_the_marker() {
        let svg = "<rect opacity=\"1\"/><rect opacity=\"0.15\"/><rect opacity=\"1\"/><rect opacity=\"0.15\"/>";
        let marks = ["one", "two"].map(|t| Mark {
            title: t.into(),
            href: None,
        });
        assert_eq!(
            with_titles(svg, "rect", "opacity=\"0.15\"", &marks),
            "<rect opacity=\"1\"/><rect opacity=\"0.15\"><title>one</title></rect><rect opacity=\"1\"/><rect opacity=\"0.15\"><title>two</title></rect>"
        );
    }
}
