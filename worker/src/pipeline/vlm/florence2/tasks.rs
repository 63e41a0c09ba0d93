//! Florence-2's tasks: the task token of a job (`<OCR>`, `<OD>`, ...) becomes the question the
//! model was trained on (the processor config's `task_prompts_without_inputs` /
//! `task_prompts_with_input`, `Florence2Processor._construct_prompts`), and the generated text
//! becomes the task's answer (`post_process_generation`): plain text, or `<loc_N>` bins turned back
//! into page pixels — quadrilaterals with their text for `<OCR_WITH_REGION>`, boxes with their
//! labels for `<OD>`-style tasks. The parsers follow the Python post-processor's regular
//! expressions step by step (including where they cut a label inside a token).

use std::collections::BTreeMap;
use std::path::Path;

use docfleet_core::{Error, Result};
use serde_json::{Value, json};

/// The task a job gets without `params.task`.
pub const DEFAULT_TASK: &str = "<OCR>";
/// `quantize_bins` of the post-processor: `<loc_0>` … `<loc_999>` per axis.
const BINS: f32 = 1000.0;

/// How a task's generated text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The text, `<s>` / `</s>` removed.
    PureText,
    /// Text regions: `text<loc_x1><loc_y1>…<loc_x4><loc_y4>`, as `{quad_boxes, labels}`.
    Ocr,
    /// `label<loc_x1><loc_y1><loc_x2><loc_y2>…`, as `{bboxes, labels}`.
    DescriptionWithBboxes,
    /// Boxes without labels (`<REGION_PROPOSAL>`), as `{bboxes, labels}` with empty labels.
    Bboxes,
}

impl Answer {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "pure_text" => Answer::PureText,
            "ocr" => Answer::Ocr,
            "description_with_bboxes" => Answer::DescriptionWithBboxes,
            "bboxes" => Answer::Bboxes,
            _ => return None,
        })
    }
}

/// One known task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The question; with `{input}` for tasks that take a text input.
    pub prompt: String,
    pub takes_input: bool,
    pub answer: Answer,
}

/// The tasks of one model, from its `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tasks {
    tasks: BTreeMap<String, Task>,
}

/// `Florence2Processor`'s built-in tables, for exports whose processor config does not carry them.
const WITHOUT_INPUTS: [(&str, &str, &str); 8] = [
    ("<OCR>", "What is the text in the image?", "pure_text"),
    ("<OCR_WITH_REGION>", "What is the text in the image, with regions?", "ocr"),
    ("<CAPTION>", "What does the image describe?", "pure_text"),
    ("<DETAILED_CAPTION>", "Describe in detail what is shown in the image.", "pure_text"),
    ("<MORE_DETAILED_CAPTION>", "Describe with a paragraph what is shown in the image.", "pure_text"),
    ("<OD>", "Locate the objects with category name in the image.", "description_with_bboxes"),
    ("<DENSE_REGION_CAPTION>", "Locate the objects in the image, with their descriptions.", "description_with_bboxes"),
    ("<REGION_PROPOSAL>", "Locate the region proposals in the image.", "bboxes"),
];
const WITH_INPUT: [(&str, &str, &str); 3] = [
    ("<REGION_TO_CATEGORY>", "What is the region {input}?", "pure_text"),
    ("<REGION_TO_DESCRIPTION>", "What does the region {input} describe?", "pure_text"),
    ("<REGION_TO_OCR>", "What text is in the region {input}?", "pure_text"),
];

impl Tasks {
    /// From the processor config (`v`, read from `path`): its three task tables where it has them,
    /// else the processor's built-in ones. Tasks whose answers this pipeline cannot read
    /// (segmentation polygons, phrase grounding) are left out.
    pub fn from_config(v: &Value, path: &Path) -> Result<Self> {
        let table = |key: &str| -> Result<Option<BTreeMap<String, String>>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, x)| match x.as_str() {
                        Some(s) => Ok((k.clone(), s.to_owned())),
                        None => Err(Error::Model(format!("{}: `{key}.{k}` must be a string", path.display()))),
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
                    .map(Some),
                Some(_) => Err(Error::Model(format!("{}: `{key}` must be an object", path.display()))),
            }
        };
        let builtin = |rows: &[(&str, &str, &str)]| -> BTreeMap<String, String> {
            rows.iter().map(|(t, p, _)| (t.to_string(), p.to_string())).collect()
        };
        let without = table("task_prompts_without_inputs")?.unwrap_or_else(|| builtin(&WITHOUT_INPUTS));
        let with = table("task_prompts_with_input")?.unwrap_or_else(|| builtin(&WITH_INPUT));
        let types = table("tasks_answer_post_processing_type")?.unwrap_or_else(|| {
            WITHOUT_INPUTS.iter().chain(&WITH_INPUT).map(|(t, _, a)| (t.to_string(), a.to_string())).collect()
        });
        let mut tasks = BTreeMap::new();
        for (takes_input, table) in [(false, &without), (true, &with)] {
            for (token, prompt) in table {
                // The post-processor reads an unlisted task as plain text.
                let kind = types.get(token).map_or("pure_text", String::as_str);
                if let Some(answer) = Answer::from_name(kind) {
                    tasks.insert(token.clone(), Task { prompt: prompt.clone(), takes_input, answer });
                }
            }
        }
        if tasks.is_empty() {
            return Err(Error::Model(format!("{}: no Florence-2 task this pipeline can run", path.display())));
        }
        Ok(Self { tasks })
    }

    /// The known task tokens, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.tasks.keys().map(String::as_str).collect()
    }

    /// The task `token` names, if it is a known one.
    pub fn get(&self, token: &str) -> Option<&Task> {
        self.tasks.get(token)
    }

    /// The task `token` names and the question for it (`input`: the text a region task takes).
    pub fn prompt(&self, token: &str, input: Option<&str>) -> Result<(&Task, String)> {
        let Some(task) = self.get(token) else {
            return Err(Error::InvalidJob(format!(
                "unknown Florence-2 task `{token}` (known: {})",
                self.names().join(", ")
            )));
        };
        let prompt = match (task.takes_input, input) {
            (false, None) => task.prompt.clone(),
            (false, Some(_)) => {
                return Err(Error::InvalidJob(format!("task {token} takes no params.text_input")));
            }
            (true, Some(text)) => task.prompt.replace("{input}", text.trim()),
            (true, None) => {
                return Err(Error::InvalidJob(format!(
                    "task {token} needs params.text_input (e.g. a region as `<loc_x1><loc_y1><loc_x2><loc_y2>`)"
                )));
            }
        };
        Ok((task, prompt))
    }
}

/// `post_process_generation(text, task, image_size)[task]`: `raw` is the generated sequence
/// decoded with its special tokens, `size` the page's width and height in pixels.
pub fn answer(kind: Answer, raw: &str, size: (u32, u32)) -> Value {
    let text = raw.replace("<s>", "").replace("</s>", "");
    match kind {
        Answer::PureText => json!(text.trim()),
        Answer::Ocr => {
            let text = text.replace("<pad>", "");
            let (mut quads, mut labels) = (Vec::new(), Vec::new());
            for (content, bins) in ocr_regions(&text) {
                let quad: Vec<i64> =
                    bins.chunks(2).flat_map(|p| [dequantize(p[0], size.0), dequantize(p[1], size.1)]).collect();
                quads.push(quad);
                labels.push(content.trim().to_owned());
            }
            json!({"quad_boxes": quads, "labels": labels})
        }
        Answer::DescriptionWithBboxes | Answer::Bboxes => {
            let text = text.replace("<pad>", "");
            let (mut boxes, mut labels) = (Vec::new(), Vec::new());
            for (label, bbox) in described_boxes(&text, kind == Answer::Bboxes) {
                boxes.push(vec![
                    dequantize(bbox[0], size.0),
                    dequantize(bbox[1], size.1),
                    dequantize(bbox[2], size.0),
                    dequantize(bbox[3], size.1),
                ]);
                labels.push(label);
            }
            json!({"bboxes": boxes, "labels": labels})
        }
    }
}

/// A bin back to pixels: `int((bin + 0.5) * size / 1000)`, in float32 as torch computes it.
fn dequantize(bin: u32, size: u32) -> i64 {
    let per_bin = (size as f64 / BINS as f64) as f32;
    ((bin as f32 + 0.5) * per_bin) as i64
}

/// `<loc_N>` at the start of `s`: N and the token's length.
fn loc_at(s: &str) -> Option<(u32, usize)> {
    let rest = s.strip_prefix("<loc_")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b'>') {
        return None;
    }
    // Bins past u32 are not a model's output; such a token reads as bin 0 rather than failing.
    Some((rest[..digits].parse().unwrap_or(0), "<loc_".len() + digits + 1))
}

/// The run of `<loc_N>` tokens at the start of `s`: the bins and the run's length.
fn loc_run(s: &str, most: usize) -> (Vec<u32>, usize) {
    let (mut bins, mut at) = (Vec::new(), 0);
    while bins.len() < most
        && let Some((bin, len)) = loc_at(&s[at..])
    {
        bins.push(bin);
        at += len;
    }
    (bins, at)
}

/// `re.findall(r"(.+?)<loc_(\d+)>{8 times}", text)`: the lazy text before each eight bins
/// (`.` does not cross a newline).
fn ocr_regions(text: &str) -> Vec<(&str, Vec<u32>)> {
    let mut out = Vec::new();
    let mut start = 0;
    'scan: while start < text.len() {
        // `.+?`: at least one character, then as few as possible before the eight bins.
        for (i, c) in text[start..].char_indices() {
            if c == '\n' {
                break;
            }
            let end = start + i + c.len_utf8();
            let (bins, len) = loc_run(&text[end..], 8);
            if bins.len() == 8 {
                out.push((&text[start..end], bins));
                start = end + len;
                continue 'scan;
            }
        }
        // A later start on the same line sees a subset of these ends: none matches before the
        // next newline either.
        match text[start..].find('\n') {
            Some(nl) => start += nl + 1,
            None => break,
        }
    }
    out
}

/// `parse_description_with_bboxes_from_text_and_spans`: phrases of non-`<` text followed by four or
/// more bins (with `allow_empty`: the bins alone), each phrase's label and boxes.
fn described_boxes(text: &str, allow_empty: bool) -> Vec<(String, [u32; 4])> {
    let mut phrases: Vec<&str> = Vec::new();
    let mut start = 0;
    while start < text.len() {
        if allow_empty {
            // (?:<loc_\d+>){4,}
            let (bins, len) = loc_run(&text[start..], usize::MAX);
            if bins.len() >= 4 {
                phrases.push(&text[start..start + len]);
                start += len;
                continue;
            }
            start += text[start..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        // ([^<]+(?:<loc_\d+>){4,}): the run of non-`<` text is taken whole; starting later inside
        // it ends at the same `<`, so after a miss the scan resumes past that `<`.
        let run = text[start..].find('<').unwrap_or(text.len() - start);
        if run == 0 {
            start += 1;
            continue;
        }
        let (bins, len) = loc_run(&text[start + run..], usize::MAX);
        if bins.len() >= 4 {
            phrases.push(&text[start..start + run + len]);
            start += run + len;
        } else {
            start += run + 1;
        }
    }
    let mut out = Vec::new();
    for phrase in phrases {
        let phrase = phrase.replacen("<ground>", "", 1).replacen("<obj>", "", 1);
        if phrase.is_empty() && !allow_empty {
            continue;
        }
        let Some(label) = label_of(&phrase) else { continue };
        let label: String = label.chars().filter(char::is_ascii).collect();
        // re.finditer(<loc_(\d+)>{4 times}) over the phrase.
        let mut at = 0;
        while at < phrase.len() {
            let (bins, len) = loc_run(&phrase[at..], 4);
            if bins.len() == 4 {
                out.push((label.clone(), [bins[0], bins[1], bins[2], bins[3]]));
                at += len;
            } else {
                at += phrase[at..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out
}

/// `re.search(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)", phrase).group().strip()`.
fn label_of(phrase: &str) -> Option<&str> {
    const MARKERS: [&str; 7] = ["<od>", "</od>", "<box>", "</box>", "<bbox>", "</bbox>", "<loc_"];
    let body = phrase.trim_start();
    let offset = phrase.len() - body.len();
    for (i, c) in body.char_indices() {
        if MARKERS.iter().any(|m| body[i..].starts_with(m)) {
            return Some(phrase[..offset + i].trim());
        }
        if c == '\n' {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_become_page_pixels_at_the_bin_centre() {
        assert_eq!(dequantize(0, 1000), 0);
        assert_eq!(dequantize(999, 1000), 999);
        assert_eq!(dequantize(500, 300), 150);
        assert_eq!(dequantize(1, 300), 0);
    }

    #[test]
    fn labels_stop_at_the_first_marker_and_not_across_lines() {
        assert_eq!(label_of("  car <loc_1>"), Some("car"));
        assert_eq!(label_of("a</od>b<loc_1>"), Some("a"));
        assert_eq!(label_of("a\nb<loc_1>"), None);
        assert_eq!(label_of("no marker"), None);
    }
}
