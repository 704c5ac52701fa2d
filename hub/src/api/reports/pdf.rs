//! The layout engine of the inspection report: a cover and one page per track, in A4.
//!
//! The PDF is written with `pdf-writer` (MIT/Apache-2.0, the typst project's low-level
//! writer, no transitive dependencies). Text uses the PDF's built-in Helvetica and
//! Helvetica-Bold with `WinAnsiEncoding` (no font file is embedded; characters outside
//! Windows-1252 print as `?`, so ΔT is written "Delta T"). Thermograms are embedded as
//! Flate-compressed RGB; visual JPEGs pass through as `DCTDecode`, never re-encoded.

use super::inspection::{
    PageImages, TrackPage, Visual, MAX_REPORT_SCANNED_FINDINGS, MAX_REPORT_TRACKS,
};
use chitti_common::finding::Finding;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

pub(super) struct Cover {
    pub(super) site_id: String,
    pub(super) site_name: String,
    pub(super) from: DateTime<Utc>,
    pub(super) to: DateTime<Utc>,
    pub(super) generated_at: DateTime<Utc>,
    pub(super) by: String,
    pub(super) findings: usize,
    pub(super) scan_capped: bool,
    pub(super) tracks: usize,
    pub(super) by_level: BTreeMap<u8, (String, u64)>,
}

/// A4 in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
const REGULAR: pdf_writer::Name<'static> = pdf_writer::Name(b"F1");
const BOLD: pdf_writer::Name<'static> = pdf_writer::Name(b"F2");

/// Text in Windows-1252 (the built-in fonts' `WinAnsiEncoding`); other characters
/// become `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{FF}' => c as u8,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2022}' => 0x95,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '\u{2026}' => 0x85,
            'Δ' => b'D',
            _ => b'?',
        })
        .collect()
}

/// Lines of at most `width` characters, broken at spaces where possible.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A page's content, written top to bottom.
struct Writer {
    content: pdf_writer::Content,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        Self {
            content: pdf_writer::Content::new(),
            y: PAGE_H - MARGIN,
        }
    }

    fn text(&mut self, font: pdf_writer::Name<'_>, size: f32, x: f32, text: &str) {
        self.y -= size * 1.35;
        let bytes = win_ansi(text);
        self.content
            .begin_text()
            .set_font(font, size)
            .next_line(x, self.y)
            .show(pdf_writer::Str(&bytes))
            .end_text();
    }

    fn para(&mut self, size: f32, text: &str) {
        // Helvetica averages about half an em per character.
        let width = ((PAGE_W - 2.0 * MARGIN) / (size * 0.5)) as usize;
        for line in wrap(text, width) {
            self.text(REGULAR, size, MARGIN, &line);
        }
    }

    /// A `label: value` line, the label bold in a fixed column.
    fn field(&mut self, label: &str, value: &str) {
        let size = 10.0;
        let lines = wrap(value, 72);
        for (i, line) in lines.iter().enumerate() {
            self.y -= size * 1.35;
            let label_bytes = win_ansi(if i == 0 { label } else { "" });
            let value_bytes = win_ansi(line);
            self.content
                .begin_text()
                .set_font(BOLD, size)
                .next_line(MARGIN, self.y)
                .show(pdf_writer::Str(&label_bytes))
                .end_text()
                .begin_text()
                .set_font(REGULAR, size)
                .next_line(MARGIN + 130.0, self.y)
                .show(pdf_writer::Str(&value_bytes))
                .end_text();
        }
    }

    fn gap(&mut self, pt: f32) {
        self.y -= pt;
    }

    fn level_badge(&mut self, level: u8) {
        let (r, g, b) = level_colour(level);
        self.content
            .save_state()
            .set_fill_rgb(r, g, b)
            .rect(MARGIN, self.y - 6.0, PAGE_W - 2.0 * MARGIN, 4.0)
            .fill_nonzero()
            .restore_state();
        self.gap(8.0);
    }

    /// Places an image XObject, fitted into `max_w × max_h`, below the current line.
    fn image(&mut self, name: pdf_writer::Name<'_>, w: u32, h: u32, max_w: f32, max_h: f32) {
        let scale = (max_w / w as f32).min(max_h / h as f32);
        let (dw, dh) = (w as f32 * scale, h as f32 * scale);
        self.y -= dh;
        self.content
            .save_state()
            .transform([dw, 0.0, 0.0, dh, MARGIN, self.y])
            .x_object(name)
            .restore_state();
    }
}

/// The colour of a level's badge (0 grey, rising from yellow to dark red).
fn level_colour(level: u8) -> (f32, f32, f32) {
    match level {
        0 => (0.6, 0.6, 0.6),
        1 => (0.95, 0.8, 0.1),
        2 => (0.95, 0.55, 0.1),
        3 => (0.85, 0.15, 0.1),
        _ => (0.55, 0.0, 0.05),
    }
}

fn fmt_c(c: f64) -> String {
    format!("{c:.1} °C")
}

fn subject(f: &Finding) -> String {
    let what = f
        .asset
        .clone()
        .or_else(|| f.component.as_ref().map(|c| c.class.clone()))
        .unwrap_or_else(|| format!("camera {}", f.camera));
    format!("{what} - {}", severity_words(&f.severity))
}

/// `level 3 (critical)`, or `cool exception` (a level-0 cool exception is never "none").
fn severity_words(sev: &chitti_common::severity::SeverityAssessment) -> String {
    if sev.level == 0 && sev.cool_exception {
        crate::dashboard::layout::COOL_EXCEPTION_NAME.to_string()
    } else {
        format!("level {} ({})", sev.level, sev.level_name)
    }
}

/// Object numbers, handed out in order.
struct Refs(i32);

impl Refs {
    fn next(&mut self) -> pdf_writer::Ref {
        self.0 += 1;
        pdf_writer::Ref::new(self.0)
    }
}

/// The PDF. Takes the images by value: each is freed once copied into the document.
pub(super) fn write_pdf(
    cover: &Cover,
    pages: &[TrackPage],
    images: Vec<PageImages>,
    visuals: Vec<Visual>,
) -> Vec<u8> {
    use pdf_writer::{Filter, Finish, Name, Pdf, Rect, Ref, TextStr};
    let mut pdf = Pdf::new();
    let mut refs = Refs(0);
    let catalog = refs.next();
    let tree = refs.next();
    let fonts = (refs.next(), refs.next());
    let info = refs.next();
    pdf.catalog(catalog).pages(tree);
    pdf.type1_font(fonts.0)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(fonts.1)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("Thermal inspection report: {}", cover.site_name);
    pdf.document_info(info)
        .title(TextStr(&title))
        .creator(TextStr("Chitti hub"))
        .producer(TextStr("Chitti hub (pdf-writer)"));
    // Each visual image once, referenced by every page that shows it.
    let mut visual_ids = Vec::with_capacity(visuals.len());
    for (data, iw, ih, comps) in &visuals {
        let id = refs.next();
        let mut image = pdf.image_xobject(id, data);
        image.filter(Filter::DctDecode);
        image.width(*iw as i32);
        image.height(*ih as i32);
        if *comps == 1 {
            image.color_space().device_gray();
        } else {
            image.color_space().device_rgb();
        }
        image.bits_per_component(8);
        image.finish();
        visual_ids.push(id);
    }
    let mut page_ids = Vec::new();
    let mut add_page =
        |pdf: &mut Pdf, refs: &mut Refs, content: Vec<u8>, xobjects: &[(Vec<u8>, Ref)]| {
            let page_id = refs.next();
            let content_id = refs.next();
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
            page.parent(tree);
            page.contents(content_id);
            {
                let mut resources = page.resources();
                resources.fonts().pair(REGULAR, fonts.0).pair(BOLD, fonts.1);
                if !xobjects.is_empty() {
                    let mut x = resources.x_objects();
                    for (name, id) in xobjects {
                        x.pair(Name(name), *id);
                    }
                }
            }
            page.finish();
            pdf.stream(content_id, &content);
            page_ids.push(page_id);
        };

    // Cover.
    let mut w = Writer::new();
    w.text(BOLD, 22.0, MARGIN, "Thermal inspection report");
    w.gap(10.0);
    w.field("Site", &format!("{} ({})", cover.site_name, cover.site_id));
    w.field(
        "Period (UTC)",
        &format!(
            "{} to {}",
            cover.from.format("%Y-%m-%d %H:%M:%S"),
            cover.to.format("%Y-%m-%d %H:%M:%S")
        ),
    );
    w.field(
        "Generated",
        &format!("{} UTC", cover.generated_at.format("%Y-%m-%d %H:%M:%S")),
    );
    w.field("Generated by", &cover.by);
    w.field("Findings received", &cover.findings.to_string());
    w.field("Tracks (alerts)", &cover.tracks.to_string());
    w.gap(12.0);
    w.text(
        BOLD,
        13.0,
        MARGIN,
        "Tracks by severity level (worst finding)",
    );
    w.gap(4.0);
    if cover.by_level.is_empty() {
        w.para(
            10.0,
            "No findings were received for this site in the period.",
        );
    }
    for (level, (name, count)) in cover.by_level.iter().rev() {
        w.field(&format!("Level {level}"), &format!("{name}: {count}"));
    }
    w.gap(12.0);
    if cover.scan_capped {
        w.para(
            10.0,
            &format!(
                "Note: only the newest {MAX_REPORT_SCANNED_FINDINGS} findings of the period were read; narrow the period for a complete report."
            ),
        );
    }
    if cover.tracks > pages.len() {
        w.para(
            10.0,
            &format!(
                "Note: this report shows the {} worst of {} tracks ({} left out; at most {MAX_REPORT_TRACKS} per report). Narrow the period, or export the alert list as CSV for all of them.",
                pages.len(),
                cover.tracks,
                cover.tracks - pages.len()
            ),
        );
    }
    w.para(
        10.0,
        "One page per track follows, worst first: the thermogram (iron palette, the finding's boxes, °C scale), the camera's visual image when the file carries one, the temperatures and the severity assessment.",
    );
    add_page(&mut pdf, &mut refs, w.content.finish().into_vec(), &[]);

    for (i, (t, imgs)) in pages.iter().zip(images).enumerate() {
        let f = &t.worst;
        let sev = &f.severity;
        let mut xobjects = Vec::new();
        let mut w = Writer::new();
        w.text(BOLD, 15.0, MARGIN, &format!("{}. {}", i + 1, subject(f)));
        w.level_badge(sev.level);
        w.field(
            "Alert status",
            t.status.as_deref().unwrap_or("no alert found"),
        );
        w.field("Max", &fmt_c(f.hotspot.max_c));
        let reference = match (sev.inputs.reference_c, sev.inputs.reference_kind) {
            (Some(c), Some(kind)) => {
                let kind = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let source = sev.inputs.reference_source.clone().unwrap_or_default();
                format!(
                    "{} ({kind}{}{source})",
                    fmt_c(c),
                    if source.is_empty() { "" } else { ", " }
                )
            }
            (Some(c), None) => fmt_c(c),
            _ => format!(
                "none (ambient {}, {})",
                fmt_c(f.reference.ambient_c),
                f.reference.ambient_source
            ),
        };
        w.field("Reference", &reference);
        w.field(
            "Delta T",
            &sev.inputs
                .delta_c
                .map_or_else(|| "-".to_string(), |d| format!("{d:.1} K")),
        );
        w.field(
            "Severity",
            &format!(
                "{}, table {} v{}",
                severity_words(sev),
                sev.table,
                sev.table_version
            ),
        );
        w.field("Recommended action", &sev.action);
        if let Some(reason) = &sev.not_assessed {
            w.field("Not assessed", reason);
        }
        w.field(
            "Where",
            &format!(
                "asset {}, gateway {}, camera {}",
                f.asset.as_deref().unwrap_or("-"),
                f.gateway,
                f.camera
            ),
        );
        if let Some(c) = &f.component {
            w.field(
                "Component",
                &format!("{} ({:.0}% confidence)", c.class, c.confidence * 100.0),
            );
        }
        w.field(
            "Observed",
            &format!("{} UTC", f.observed_at.format("%Y-%m-%d %H:%M:%S")),
        );
        w.field("Findings in period", &t.findings_in_period.to_string());
        w.field("Finding", &f.id.to_string());
        if let Some(id) = t.alert_id {
            w.field("Alert", &id.to_string());
        }
        w.gap(8.0);
        let bottom_room = |w: &Writer| w.y - MARGIN;
        if let Some((data, iw, ih)) = &imgs.thermogram {
            let id = refs.next();
            let mut image = pdf.image_xobject(id, data);
            image.filter(Filter::FlateDecode);
            image.width(*iw as i32);
            image.height(*ih as i32);
            image.color_space().device_rgb();
            image.bits_per_component(8);
            image.finish();
            let name = format!("Th{i}").into_bytes();
            let room = if imgs.visual.is_some() {
                (bottom_room(&w) - 20.0) * 0.55
            } else {
                bottom_room(&w) - 20.0
            };
            w.text(BOLD, 10.0, MARGIN, "Thermogram");
            w.gap(2.0);
            w.image(Name(&name), *iw, *ih, PAGE_W - 2.0 * MARGIN, room.max(60.0));
            xobjects.push((name, id));
            w.gap(6.0);
        }
        if let Some((v, id)) = imgs.visual.and_then(|v| Some((v, *visual_ids.get(v)?))) {
            let (_, iw, ih, _) = &visuals[v];
            let name = format!("Vi{v}").into_bytes();
            w.text(BOLD, 10.0, MARGIN, "Visual image");
            w.gap(2.0);
            let room = bottom_room(&w) - 14.0 * imgs.notes.len() as f32;
            w.image(Name(&name), *iw, *ih, PAGE_W - 2.0 * MARGIN, room.max(60.0));
            xobjects.push((name, id));
            w.gap(6.0);
        }
        for note in &imgs.notes {
            w.para(9.0, note);
        }
        add_page(
            &mut pdf,
            &mut refs,
            w.content.finish().into_vec(),
            &xobjects,
        );
    }

    let count = page_ids.len() as i32;
    pdf.pages(tree).kids(page_ids).count(count);
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_wrapped_at_spaces_and_long_words_are_split() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }

    #[test]
    fn text_is_written_in_windows_1252() {
        assert_eq!(win_ansi("87.5 °C – ok"), b"87.5 \xB0C \x96 ok");
        assert_eq!(win_ansi("ΔT 漢"), b"DT ?");
    }
}
