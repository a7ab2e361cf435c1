//! The page: one HTML file with its style, its charts (inline SVG) and its
//! data (`<script type="application/json" id="saker-report-data">`) inside,
//! and one small inline script: it opens the alert a chart's mark links to
//! (and the rule's list around it), and writes the table of the events
//! behind an alert, from the data, when the alert is opened. Nothing is
//! loaded from elsewhere.

use std::fmt::Write;

use super::charts::{self, ChartError};
use super::ReportData;

/// Text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The data as JSON that cannot end its `<script>` element: every `<` is
/// written `\u003c` (so neither `</script>` nor `<!--` can appear).
pub fn script_json(data: &ReportData) -> String {
    serde_json::to_string(data)
        .unwrap_or_else(|_| "{}".to_string())
        .replace('<', "\\u003c")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1160px}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;\
text-align:left;vertical-align:top;font-size:.9em}td.n{text-align:right}\
.p{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.3em}\
details{margin:.3em 0}summary{cursor:pointer}pre{white-space:pre-wrap;font-size:.85em}\
.caps{background:#fff4d6;padding:.4em .8em}figure{margin:.5em 0}svg{max-width:100%;height:auto}\
details.alert{margin:.2em 0 .2em 1em;font-size:.9em}details.alert>summary{font-family:monospace}\
.events table{margin-left:1em}.note{color:#666;font-size:.85em;margin-left:1em}";

/// Writes an alert's events table from the data when the alert is opened
/// (as text: nothing in the data becomes markup), and opens the alert a
/// link points at with the `<details>` around it.
const SCRIPT: &str = "var D=JSON.parse(document.getElementById('saker-report-data').textContent);\
var C=[['time','Time'],['verb','Verb'],['user','User'],['resource','Resource'],['namespace','Namespace'],\
['name','Name'],['code','Code'],['auditID','auditID'],['step','Step']];\
function ev(d){if(d.dataset.done)return;d.dataset.done='1';\
var a=D.rules[+d.dataset.rule].listed[+d.dataset.alert],b=d.querySelector('.events');\
if(!a||!b||!a.events.length)return;var t=document.createElement('table'),h=t.insertRow();\
var cs=C.filter(function(c){return a.events.some(function(e){return e[c[0]]!==undefined;});});\
cs.forEach(function(c){var th=document.createElement('th');th.textContent=c[1];h.appendChild(th);});\
a.events.forEach(function(e){var r=t.insertRow();r.className='event';\
cs.forEach(function(c){r.insertCell().textContent=e[c[0]]===undefined?'':e[c[0]];});});b.appendChild(t);}\
document.querySelectorAll('details.alert').forEach(function(d){\
d.addEventListener('toggle',function(){if(d.open)ev(d);});});\
function o(){var e=location.hash&&document.getElementById(location.hash.slice(1));if(!e)return;\
for(var p=e;p;p=p.parentElement){if(p.tagName==='DETAILS'){if(p.classList.contains('alert'))ev(p);p.open=true;}}\
e.scrollIntoView();}window.addEventListener('hashchange',o);o();";

fn colour(priority: &str) -> String {
    let c = charts::priority_colour(priority);
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The whole page.
pub fn render(data: &ReportData) -> Result<String, ChartError> {
    let mut h = String::new();
    let e = escape;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Saker replay report: {}</title><style>{STYLE}</style></head><body>\n",
        e(&data.input)
    );
    let _ = write!(
        h,
        "<h1>Saker replay report</h1><p>Input <code>{}</code>: {} events, \
<strong id=\"alerts-total\">{}</strong> alerts from {} rules",
        e(&data.input),
        data.health.events,
        data.alerts_total,
        data.rules.len()
    );
    if let (Some(a), Some(b)) = (&data.first_alert, &data.last_alert) {
        let _ = write!(h, ", between {} and {}", e(a), e(b));
    }
    h.push_str(".</p>\n");
    if !data.caps.is_empty() {
        h.push_str(
            "<div class=\"caps\" id=\"caps\"><strong>Capped to keep the page small:</strong><ul>",
        );
        for c in &data.caps {
            let _ = write!(h, "<li>{}</li>", e(c));
        }
        h.push_str("</ul></div>\n");
    }

    h.push_str(
        "<h2>Timeline</h2><section id=\"timeline\"><p>One lane per rule, coloured by \
priority; each mark is the alerts of one time bucket (hover for the first one's output, click \
for the events behind it).</p>",
    );
    if data.rules.is_empty() {
        h.push_str("<p>No alerts.</p>");
    } else {
        let _ = write!(
            h,
            "<figure class=\"chart\" id=\"timeline-chart\">{}</figure>",
            charts::timeline(data)?
        );
    }
    h.push_str("</section>\n");

    let windowed: Vec<_> = data
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == "windowed")
        .collect();
    h.push_str(
        "<h2>Windowed rules</h2><section id=\"windowed\"><p>Each key's measured value at \
every tick it was evaluated at (it holds until the next), against the threshold (red); its \
firing periods are shaded, and each alert is a mark (click for the events behind it).</p>",
    );
    if windowed.is_empty() {
        h.push_str("<p>No windowed rule alerted.</p>");
    }
    for (i, r) in windowed {
        let _ = write!(
            h,
            "<figure class=\"chart windowed\" data-rule=\"{}\" data-keys=\"{}\"><figcaption>{}</figcaption>{}</figure>",
            e(&r.name),
            r.keys.len(),
            e(&r.name),
            charts::windowed(r, i)?
        );
    }
    h.push_str("</section>\n");

    let seqs: Vec<_> = data
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == "sequence")
        .collect();
    h.push_str(
        "<h2>Sequences</h2><section id=\"sequences\"><p>Each completed sequence's steps, \
joined in time (hover a step for its event, click for the events).</p>",
    );
    if seqs.is_empty() {
        h.push_str("<p>No sequence completed.</p>");
    }
    for (i, r) in seqs {
        let _ = write!(
            h,
            "<figure class=\"chart sequence\" data-rule=\"{}\"><figcaption>{}</figcaption>{}</figure>",
            e(&r.name),
            e(&r.name),
            charts::sequences(r, i)?
        );
    }
    h.push_str("</section>\n");

    identities(&mut h, data);
    health(&mut h, data);
    if let Some(p) = &data.policy {
        let _ = write!(
            h,
            "<h2>Audit policy</h2><section id=\"policy\"><p>What <code>{}</code> would have kept \
of this log ({} of {} bytes), and how long the API server's retention flags keep it.</p>\
<pre>{}</pre><pre>{}</pre></section>",
            e(&p.path),
            p.kept_bytes,
            p.recorded_bytes,
            e(&p.table),
            e(&p.retention)
        );
    }
    alerts(&mut h, data);
    let _ = write!(
        h,
        "<script type=\"application/json\" id=\"saker-report-data\">{}</script>\n\
<script>{SCRIPT}</script>\n</body></html>\n",
        script_json(data)
    );
    Ok(h)
}

fn identities(h: &mut String, data: &ReportData) {
    let e = escape;
    h.push_str("<h2>Identities</h2><section id=\"identities\"><p>The identities behind the most \
alerts, and the resources and verbs of all their events in the input.</p><table><tr><th>Identity</th>\
<th>Alerts</th><th>Rules</th><th>Events</th><th>Resources</th><th>Verbs</th></tr>");
    let list = |v: &[(String, u64)]| {
        v.iter()
            .map(|(k, n)| format!("{} ({n})", e(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for i in &data.identities {
        let rules: Vec<String> = i
            .by_rule
            .iter()
            .map(|(r, n)| format!("{} ({n})", e(r)))
            .collect();
        let _ = write!(
            h,
            "<tr class=\"identity\"><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            e(&i.name),
            i.alerts,
            rules.join(", "),
            i.events,
            list(&i.resources),
            list(&i.verbs)
        );
    }
    h.push_str("</table></section>\n");
}

fn health(h: &mut String, data: &ReportData) {
    let s = &data.health;
    let _ = write!(
        h,
        "<h2>Input health</h2><section id=\"health\"><table>\
<tr><th>Lines read</th><td class=\"n\">{}</td></tr><tr><th>Events</th><td class=\"n\" id=\"health-events\">{}</td></tr>\
<tr><th>Late events</th><td class=\"n\">{}</td></tr><tr><th>Keys evicted</th><td class=\"n\">{}</td></tr>",
        s.lines, s.events, s.late_events, s.evictions
    );
    for (reason, n) in &s.skipped {
        let _ = write!(
            h,
            "<tr><th>Skipped: {}</th><td class=\"n\">{n}</td></tr>",
            escape(reason)
        );
    }
    h.push_str("</table></section>\n");
}

fn alerts(h: &mut String, data: &ReportData) {
    let e = escape;
    h.push_str(
        "<h2>Alerts by rule</h2><section id=\"alerts\"><p>Open an alert for the audit \
events behind it.</p>",
    );
    for (i, r) in data.rules.iter().enumerate() {
        let _ = write!(
            h,
            "<details class=\"lane\" id=\"{}\" data-rule=\"{}\" data-count=\"{}\" data-priority=\"{}\">\
<summary><span class=\"p\" style=\"background:{}\"></span>{} — {} alert(s), {} ({})</summary>",
            charts::rule_anchor(i),
            e(&r.name),
            r.alerts,
            r.priority,
            colour(r.priority),
            e(&r.name),
            r.alerts,
            r.priority,
            r.kind
        );
        for (j, a) in r.listed.iter().enumerate() {
            let _ = write!(
                h,
                "<details class=\"alert\" id=\"{}\" data-rule=\"{i}\" data-alert=\"{j}\" data-events=\"{}\">\
<summary>{}{} {}</summary><div class=\"events\"></div>",
                charts::alert_anchor(i, j),
                a.events.len(),
                e(&a.time),
                a.state.map(|s| format!(" ({s})")).unwrap_or_default(),
                e(&a.output),
            );
            let shown = a.events.len();
            let mut note = match (shown, a.events_total) {
                (0, _) => "No event shown".to_string(),
                (n, t) if (n as u64) < t => format!("{n} of {t} events shown"),
                (n, _) => format!("{n} event(s)"),
            };
            if let Some(n) = &a.events_note {
                let _ = write!(note, ": {n}");
            }
            let _ = write!(h, "<p class=\"note\">{}.</p></details>", e(&note));
        }
        if r.alerts > r.listed.len() as u64 {
            let _ = write!(
                h,
                "<p>{} of {} alerts listed.</p>",
                r.listed.len(),
                r.alerts
            );
        }
        h.push_str("</details>\n");
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Collector, Health};

    #[test]
    fn data_cannot_close_its_script_element() {
        let input = "</script><!--<script>alert(1)</script>".to_string();
        let set = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let data = Collector::new(Default::default(), &set).finish(
            input.clone(),
            Health::default(),
            &Vec::new(),
            0,
            None,
        );
        let json = script_json(&data);
        assert!(!json.contains('<'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["input"], input.as_str());
        let page = render(&data).unwrap();
        assert_eq!(page.matches("</script>").count(), 2);
    }
}
