//! The pictures beside the figures (`cargo xtask bench ... --write`): SVG drawn here, a few
//! shapes and no plotting library, so a plot is plain text that diffs like the table it shows.

use std::{fmt::Write as _, path::PathBuf, sync::OnceLock};

/// Where plots go (`--plots DIR`); none are drawn without it.
static DIR: OnceLock<PathBuf> = OnceLock::new();

pub fn write_to(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Writes `svg` as `DIR/name.svg`, when plots are asked for.
pub fn save(name: &str, svg: &str) -> anyhow::Result<()> {
    let Some(dir) = DIR.get() else { return Ok(()) };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, svg)?;
    eprintln!("plot: {}", path.display());
    Ok(())
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 410.0;
const RIGHT: f64 = 40.0;
const ROW: f64 = 26.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 40.0;
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";
const COLOURS: [&str; 4] = ["#1f6fb2", "#d9822b", "#6a8d2f", "#8f4fa3"];

/// A value axis, linear from zero or logarithmic.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
}

impl Axis {
    fn over(values: impl Iterator<Item = f64>, log: bool) -> Self {
        let (mut low, mut high) = (f64::MAX, 0f64);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            low = low.min(v);
            high = high.max(v);
        }
        if high <= 0.0 {
            high = 1.0;
        }
        if log {
            let low = 10f64.powf(low.min(high).log10().floor());
            Self { low, high: 10f64.powf(high.log10().ceil()), log }
        } else {
            Self { low: 0.0, high: nice(high), log }
        }
    }

    fn x(&self, v: f64) -> f64 {
        let share = if self.log {
            (v.max(self.low).log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            v / self.high
        };
        LEFT + share.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut ticks = Vec::new();
            let mut decade = self.low;
            while decade <= self.high * 1.001 {
                ticks.extend(
                    [1.0, 2.0, 5.0].map(|m| m * decade).into_iter().filter(|t| *t <= self.high * 1.001),
                );
                decade *= 10.0;
            }
            ticks
        } else {
            (0..=5).map(|i| self.high * i as f64 / 5.0).collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at or above `v`.
fn nice(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * decade).find(|n| *n >= v).unwrap_or(v)
}

fn number(v: f64) -> String {
    if v >= 10.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The frame: title, the axis with its ticks and unit, and `rows` labels; `body` draws.
fn frame(title: &str, unit: &str, axis: &Axis, labels: &[&str], body: &str) -> String {
    let height = TOP + ROW * labels.len() as f64 + BOTTOM;
    let bottom = height - BOTTOM;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-family=\"sans-serif\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for tick in axis.ticks() {
        let x = axis.x(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" {FONT} text-anchor=\"middle\">{}</text>",
            bottom + 16.0,
            number(tick)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" {FONT} text-anchor=\"middle\">{}</text>",
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        bottom + 32.0,
        escape(unit)
    );
    for (i, label) in labels.iter().enumerate() {
        let y = TOP + ROW * (i as f64 + 0.5) + 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{y:.1}\" {FONT} text-anchor=\"end\">{}</text>",
            LEFT - 8.0,
            escape(label)
        );
    }
    svg + body + "</svg>\n"
}

/// One row per series, each value a dot and the median a bar: a distribution at a glance. Rows
/// whose labels start with the same word (the same system) share a colour.
pub fn strips(title: &str, unit: &str, series: &[(String, Vec<f64>)], log: bool) -> String {
    let axis = Axis::over(series.iter().flat_map(|(_, v)| v.iter().copied()), log);
    let mut systems: Vec<&str> = Vec::new();
    let mut body = String::new();
    for (i, (label, values)) in series.iter().enumerate() {
        let system = label.split([' ', ',']).next().unwrap_or_default();
        if !systems.contains(&system) {
            systems.push(system);
        }
        let at = systems.iter().position(|s| *s == system).unwrap_or(0);
        let colour = COLOURS[at % COLOURS.len()];
        let middle = TOP + ROW * (i as f64 + 0.5);
        for (j, v) in values.iter().enumerate() {
            // A little spread across the row, so that equal values stay visible.
            let y = middle + ((j % 5) as f64 - 2.0) * 2.0;
            let _ = writeln!(
                body,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\" fill-opacity=\"0.5\"/>",
                axis.x(*v)
            );
        }
        if let Some(median) = median(values) {
            let x = axis.x(median);
            let _ = writeln!(
                body,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
                middle - 9.0,
                middle + 9.0,
                x + 4.0,
                middle - 6.0,
                number(median)
            );
        }
    }
    let labels: Vec<&str> = series.iter().map(|(l, _)| l.as_str()).collect();
    frame(title, unit, &axis, &labels, &body)
}

/// One bar per row, its value at its end.
pub fn bars(title: &str, unit: &str, rows: &[(String, f64)]) -> String {
    let axis = Axis::over(rows.iter().map(|(_, v)| *v), false);
    let mut body = String::new();
    for (i, (_, value)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64 + 5.0;
        let end = axis.x(*value);
        let _ = writeln!(
            body,
            "<rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            (end - LEFT).max(0.5),
            ROW - 10.0,
            COLOURS[0],
            end + 4.0,
            y + ROW - 14.0,
            number(*value)
        );
    }
    let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    frame(title, unit, &axis, &labels, &body)
}

/// The median as the benches' tables give it (nearest rank: of 20 values, the 10th), so that a
/// plot and the table beside it say the same.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (sorted.len() as f64 * 0.5).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element's attributes named once (a repeated one makes the file unreadable).
    fn well_formed(svg: &str) {
        for element in svg.split('<').skip(1) {
            let tag = element.split('>').next().unwrap();
            let mut names: Vec<&str> =
                tag.split_whitespace().skip(1).filter_map(|a| a.split_once('=').map(|(n, _)| n)).collect();
            names.sort();
            let before = names.len();
            names.dedup();
            assert_eq!(names.len(), before, "an attribute twice in <{tag}>");
        }
    }

    #[test]
    fn a_strip_marks_every_value_and_the_median() {
        let svg = strips("t", "ms", &[("a".into(), vec![80.0, 90.0, 85.0]), ("b".into(), vec![330.0])], true);
        // The nearest-rank median, as the tables: of [1, 2, 3, 4], 2.
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(svg.matches("<circle").count(), 4);
        well_formed(&svg);
        assert!(svg.contains(">85</text>") && svg.contains(">330</text>"), "{svg}");
        // Log axis from 10 to 1000: 100 and 1000 are ticks.
        assert!(svg.contains(">100</text>") && svg.contains(">1000</text>"));
    }

    #[test]
    fn bars_scale_to_a_round_top() {
        let svg = bars("t", "MiB", &[("x".into(), 15.3), ("y".into(), 46.7)]);
        // Top tick 50: 46.7 is 93% of the plotting width, labelled in whole units (the table
        // beside the plot has the decimals); below 10 a label keeps one.
        assert!(svg.contains(">50</text>") && svg.contains(">47</text>"), "{svg}");
        assert!(bars("t", "%", &[("x".into(), 1.26)]).contains(">1.3</text>"));
        well_formed(&svg);
        let width = (WIDTH - LEFT - RIGHT) * 46.7 / 50.0;
        assert!(svg.contains(&format!("width=\"{width:.1}\"")), "{svg}");
    }
}
