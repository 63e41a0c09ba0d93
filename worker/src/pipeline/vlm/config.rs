//! The model directory's JSON files, read the way `transformers` reads them: `config.json`
//! (token ids, decoder size), `generation_config.json` (greedy-search settings; optional, as in
//! `transformers`, which then takes them from `config.json`) and `preprocessor_config.json`
//! (the image steps).

use std::path::Path;

use docfleet_core::{Error, Result};
use serde_json::Value;

use super::resample::Filter;

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", path.display())))
}

fn bad(path: &Path, key: &str, why: &str) -> Error {
    Error::Model(format!("{}: `{key}` {why}", path.display()))
}

/// `None` for a missing or null key.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn as_id(path: &Path, key: &str, v: &Value) -> Result<i64> {
    v.as_i64().ok_or_else(|| bad(path, key, "must be a token id"))
}

/// One id or a list of ids (`eos_token_id` may be either).
fn as_ids(path: &Path, key: &str, v: &Value) -> Result<Vec<i64>> {
    match v {
        Value::Array(items) => items.iter().map(|x| as_id(path, key, x)).collect(),
        other => Ok(vec![as_id(path, key, other)?]),
    }
}

/// What `config.json` says about the model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `encoder.model_type` (`donut-swin`, `vit`, ...).
    pub encoder_type: String,
    /// `decoder.model_type` (`mbart`, `trocr`, ...).
    pub decoder_type: String,
    /// Longest decoder input: `decoder.max_position_embeddings` (or `n_positions`, `max_target_positions`).
    pub max_positions: Option<usize>,
    /// `decoder.vocab_size`.
    pub vocab_size: Option<usize>,
    /// The whole file, for the generation settings `generation_config.json` leaves out.
    raw: Value,
}

impl ModelConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let raw = read_json(path)?;
        let section = |name: &str| get(&raw, name).filter(|v| v.is_object());
        let (Some(encoder), Some(decoder)) = (section("encoder"), section("decoder")) else {
            return Err(Error::Model(format!(
                "{} has no `encoder` and `decoder` sections: not a vision-encoder-decoder model",
                path.display()
            )));
        };
        let model_type = |v: &Value| get(v, "model_type").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        let max_positions = ["max_position_embeddings", "n_positions", "max_target_positions"]
            .iter()
            .find_map(|k| get(decoder, k).and_then(Value::as_u64))
            .map(|n| n as usize);
        let vocab_size = get(decoder, "vocab_size").and_then(Value::as_u64).map(|n| n as usize);
        Ok(Self {
            encoder_type: model_type(encoder),
            decoder_type: model_type(decoder),
            max_positions,
            vocab_size,
            raw: raw.clone(),
        })
    }

    /// A decoder-only model's `config.json` (Idefics3 family): the text model's section
    /// (`text_config`) stands where a vision-encoder-decoder's `decoder` section is, so the
    /// generation settings are found the same way.
    pub fn decoder_only(path: &Path) -> Result<Self> {
        let mut raw = read_json(path)?;
        let model_type = get(&raw, "model_type").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        // Older exports (Qwen2-VL's first configs) keep the text model's keys at the top level.
        let text = get(&raw, "text_config").cloned().unwrap_or_else(|| raw.clone());
        let max_positions = get(&text, "max_position_embeddings").and_then(Value::as_u64).map(|n| n as usize);
        let vocab_size = get(&text, "vocab_size").and_then(Value::as_u64).map(|n| n as usize);
        if let Some(obj) = raw.as_object_mut() {
            obj.insert("decoder".into(), text);
        }
        Ok(Self { encoder_type: String::new(), decoder_type: model_type, max_positions, vocab_size, raw })
    }

    /// A top-level key of `config.json`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        get(&self.raw, key)
    }

    /// Donut checkpoints take a task prompt as their whole decoder input; other models get the
    /// decoder start token in front of a prompt that lacks it (`transformers`'
    /// `_prepare_decoder_input_ids_for_generation`).
    pub fn prompt_is_verbatim(&self) -> bool {
        self.encoder_type.to_lowercase().contains("donut")
    }
}

/// Greedy-search settings, as `transformers`' `generate` would use them for this model.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub decoder_start_token_id: i64,
    pub eos_token_ids: Vec<i64>,
    pub pad_token_id: i64,
    /// `max_new_tokens`; `None` when only `max_length` (prompt included) is set.
    pub max_new_tokens: Option<usize>,
    /// `max_length`: prompt plus generated tokens (transformers' default 20).
    pub max_length: usize,
    pub min_length: usize,
    pub min_new_tokens: usize,
    pub no_repeat_ngram_size: usize,
    pub repetition_penalty: f32,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_ids: Vec<i64>,
    pub suppress_tokens: Vec<i64>,
    pub begin_suppress_tokens: Vec<i64>,
    pub bad_words_ids: Vec<Vec<i64>>,
    /// `num_beams` > 1 or `do_sample` in the file: this pipeline still searches greedily.
    pub not_greedy: Option<String>,
}

impl GenerationConfig {
    /// From `generation_config.json` if there is one, else from `config.json` (top level, then the
    /// decoder section), as `GenerationConfig.from_model_config` does.
    pub fn load(generation_config: Option<&Path>, model: &ModelConfig, model_path: &Path) -> Result<Self> {
        let file = match generation_config {
            Some(p) => Some((p, read_json(p)?)),
            None => None,
        };
        let decoder = model.raw.get("decoder").cloned().unwrap_or(Value::Null);
        let sources: Vec<(&Path, &Value)> = match &file {
            Some((p, v)) => vec![(p, v)],
            None => vec![(model_path, &model.raw), (model_path, &decoder)],
        };
        // generation_config.json may leave token ids to config.json (older exports do).
        let ids_sources: Vec<(&Path, &Value)> = match &file {
            Some((p, v)) => vec![(p, v), (model_path, &model.raw), (model_path, &decoder)],
            None => sources.clone(),
        };
        let find = |srcs: &[(&'_ Path, &'_ Value)], key: &str| {
            srcs.iter().find_map(|(p, v)| get(v, key).map(|x| (p.to_path_buf(), x.clone())))
        };
        let id =
            |key: &str| -> Result<Option<i64>> { find(&ids_sources, key).map(|(p, v)| as_id(&p, key, &v)).transpose() };
        let uint = |key: &str| -> Result<Option<usize>> {
            find(&sources, key)
                .map(|(p, v)| v.as_u64().map(|n| n as usize).ok_or_else(|| bad(&p, key, "must be a whole number")))
                .transpose()
        };
        let ids_list = |key: &str| -> Result<Vec<i64>> {
            find(&sources, key).map(|(p, v)| as_ids(&p, key, &v)).transpose().map(Option::unwrap_or_default)
        };

        let bos = id("bos_token_id")?;
        let decoder_start_token_id = id("decoder_start_token_id")?.or(bos).ok_or_else(|| {
            Error::Model(format!(
                "neither decoder_start_token_id nor bos_token_id is set in {} or {}",
                generation_config.map(|p| p.display().to_string()).unwrap_or_else(|| "generation_config.json".into()),
                model_path.display()
            ))
        })?;
        let eos_token_ids = match find(&ids_sources, "eos_token_id") {
            Some((p, v)) => as_ids(&p, "eos_token_id", &v)?,
            None => Vec::new(),
        };
        // transformers pads with the first EOS when there is no pad token.
        let pad_token_id = id("pad_token_id")?.or(eos_token_ids.first().copied()).unwrap_or(0);
        let repetition_penalty = match find(&sources, "repetition_penalty") {
            Some((p, v)) => {
                let r = v.as_f64().ok_or_else(|| bad(&p, "repetition_penalty", "must be a number"))?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err(bad(&p, "repetition_penalty", "must be a positive number"));
                }
                r as f32
            }
            None => 1.0,
        };
        let bad_words_ids = match find(&sources, "bad_words_ids") {
            Some((p, Value::Array(words))) => words
                .iter()
                .map(|w| match w {
                    Value::Array(ids) if !ids.is_empty() => ids.iter().map(|x| as_id(&p, "bad_words_ids", x)).collect(),
                    _ => Err(bad(&p, "bad_words_ids", "must be a list of non-empty lists of token ids")),
                })
                .collect::<Result<Vec<Vec<i64>>>>()?,
            Some((p, _)) => return Err(bad(&p, "bad_words_ids", "must be a list of lists of token ids")),
            None => Vec::new(),
        };
        let num_beams = uint("num_beams")?.unwrap_or(1);
        let do_sample = find(&sources, "do_sample").and_then(|(_, v)| v.as_bool()).unwrap_or(false);
        let not_greedy = match (num_beams > 1, do_sample) {
            (true, _) => Some(format!("num_beams = {num_beams}")),
            (false, true) => Some("do_sample = true".to_owned()),
            _ => None,
        };
        let forced_eos_token_ids = match find(&sources, "forced_eos_token_id") {
            Some((p, v)) => as_ids(&p, "forced_eos_token_id", &v)?,
            None => Vec::new(),
        };
        Ok(Self {
            decoder_start_token_id,
            eos_token_ids,
            pad_token_id,
            max_new_tokens: uint("max_new_tokens")?,
            max_length: uint("max_length")?.unwrap_or(20),
            min_length: uint("min_length")?.unwrap_or(0),
            min_new_tokens: uint("min_new_tokens")?.unwrap_or(0),
            no_repeat_ngram_size: uint("no_repeat_ngram_size")?.unwrap_or(0),
            repetition_penalty,
            forced_bos_token_id: find(&sources, "forced_bos_token_id")
                .map(|(p, v)| as_id(&p, "forced_bos_token_id", &v))
                .transpose()?,
            forced_eos_token_ids,
            suppress_tokens: ids_list("suppress_tokens")?,
            begin_suppress_tokens: ids_list("begin_suppress_tokens")?,
            bad_words_ids,
            not_greedy,
        })
    }
}

/// Which `transformers` image processor the steps follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorKind {
    /// `DonutImageProcessor` (and `NougatImageProcessor` without margin cropping): long-axis
    /// alignment, shortest-edge resize, thumbnail, centre padding.
    Donut,
    /// `ViTImageProcessor` (TrOCR), and `CLIPImageProcessor` with a fixed `{height, width}` size
    /// and no centre crop (Florence-2): the whole image resized to the model's size.
    Vit,
}

/// The image steps of `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub kind: ProcessorKind,
    /// The model's input size.
    pub height: u32,
    pub width: u32,
    pub do_align_long_axis: bool,
    pub do_resize: bool,
    pub resample: Filter,
    pub do_thumbnail: bool,
    pub do_pad: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl ImageProcessorConfig {
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_value(&read_json(path)?, path)
    }

    /// Parse a processor config; `path` names it in errors. Defaults are the processor classes' own.
    pub fn from_value(v: &Value, path: &Path) -> Result<Self> {
        let class = get(v, "image_processor_type")
            .or_else(|| get(v, "feature_extractor_type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let flag = |key: &str, default: bool| -> Result<bool> {
            get(v, key)
                .map(|x| x.as_bool().ok_or_else(|| bad(path, key, "must be true or false")))
                .unwrap_or(Ok(default))
        };
        let kind = if class.starts_with("Donut") {
            ProcessorKind::Donut
        } else if class.starts_with("Nougat") {
            if flag("do_crop_margin", true)? {
                return Err(bad(
                    path,
                    "do_crop_margin",
                    "is not supported (Nougat's margin cropping); set it to false",
                ));
            }
            ProcessorKind::Donut
        } else if class.starts_with("ViT") {
            ProcessorKind::Vit
        } else if class.starts_with("CLIP") {
            // CLIP's own default is a shortest-edge resize and a centre crop; a fixed size with the
            // crop off (or cropping to that same size) is a plain resize, as ViT's.
            let fixed = get(v, "size").is_some_and(|s| s.get("height").is_some() && s.get("width").is_some());
            let crop_is_noop = !flag("do_center_crop", true)? || get(v, "crop_size") == get(v, "size");
            if !(fixed && crop_is_noop) {
                return Err(Error::Model(format!(
                    "{}: CLIPImageProcessor is supported with `size` {{height, width}} and `do_center_crop` false \
                     (Florence-2's), not a shortest-edge resize or a centre crop",
                    path.display()
                )));
            }
            ProcessorKind::Vit
        } else {
            return Err(Error::Model(format!(
                "{}: image processor `{class}` is not supported (supported: DonutImageProcessor, \
                 NougatImageProcessor without do_crop_margin, ViTImageProcessor, CLIPImageProcessor at a fixed size)",
                path.display()
            )));
        };
        let (default_h, default_w) = match (kind, class.starts_with("Nougat")) {
            (ProcessorKind::Donut, false) => (2560, 1920),
            (ProcessorKind::Donut, true) => (896, 672),
            (ProcessorKind::Vit, _) => (224, 224),
        };
        let dim = |x: &Value| x.as_u64().filter(|&n| (1..=65_536).contains(&n)).map(|n| n as u32);
        let (height, width) = match get(v, "size") {
            None => (default_h, default_w),
            Some(Value::Object(m)) => match (m.get("height").and_then(dim), m.get("width").and_then(dim)) {
                (Some(h), Some(w)) => (h, w),
                _ => return Err(bad(path, "size", "must give `height` and `width` (other forms are not supported)")),
            },
            // Donut reverses a list (its checkpoints write [width, height]); ViT reads (height, width).
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(|x| dim(x).is_some()) => {
                let (a0, a1) = (dim(&a[0]).unwrap_or(1), dim(&a[1]).unwrap_or(1));
                if kind == ProcessorKind::Donut { (a1, a0) } else { (a0, a1) }
            }
            Some(x) if dim(x).is_some() => (dim(x).unwrap_or(1), dim(x).unwrap_or(1)),
            Some(_) => return Err(bad(path, "size", "must be {height, width}, [a, b] or a number of pixels")),
        };
        let resample = match get(v, "resample") {
            None => Filter::Bilinear,
            Some(x) => x.as_i64().and_then(Filter::from_pil).ok_or_else(|| bad(path, "resample", "must be 0–5"))?,
        };
        let triple = |key: &str, default: f32| -> Result<[f32; 3]> {
            match get(v, key) {
                None => Ok([default; 3]),
                Some(Value::Array(a)) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = x.as_f64().ok_or_else(|| bad(path, key, "must hold numbers"))? as f32;
                    }
                    Ok(out)
                }
                Some(x) => {
                    x.as_f64().map(|f| [f as f32; 3]).ok_or_else(|| bad(path, key, "must be a number or 3 numbers"))
                }
            }
        };
        let image_std = triple("image_std", 0.5)?;
        if image_std.contains(&0.0) {
            return Err(bad(path, "image_std", "must not contain 0"));
        }
        let donut = kind == ProcessorKind::Donut;
        Ok(Self {
            kind,
            height,
            width,
            do_align_long_axis: donut && flag("do_align_long_axis", false)?,
            do_resize: flag("do_resize", true)?,
            resample,
            do_thumbnail: donut && flag("do_thumbnail", true)?,
            do_pad: donut && flag("do_pad", true)?,
            do_rescale: flag("do_rescale", true)?,
            rescale_factor: match get(v, "rescale_factor") {
                None => 1.0 / 255.0,
                Some(x) => x.as_f64().ok_or_else(|| bad(path, "rescale_factor", "must be a number"))?,
            },
            do_normalize: flag("do_normalize", true)?,
            image_mean: triple("image_mean", 0.5)?,
            image_std,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("preprocessor_config.json")
    }

    #[test]
    fn processor_sizes_and_defaults() {
        let c = ImageProcessorConfig::from_value(&json!({"image_processor_type": "DonutImageProcessor"}), p()).unwrap();
        assert_eq!((c.kind, c.height, c.width, c.resample), (ProcessorKind::Donut, 2560, 1920, Filter::Bilinear));
        assert!(c.do_thumbnail && c.do_pad && !c.do_align_long_axis);
        // Donut lists are [width, height]; ViT lists are (height, width); a number is square.
        let c = ImageProcessorConfig::from_value(
            &json!({"image_processor_type": "DonutImageProcessor", "size": [1920, 2560], "resample": 3}),
            p(),
        )
        .unwrap();
        assert_eq!((c.height, c.width, c.resample), (2560, 1920, Filter::Bicubic));
        let c = ImageProcessorConfig::from_value(
            &json!({"feature_extractor_type": "ViTFeatureExtractor", "size": 384}),
            p(),
        )
        .unwrap();
        assert_eq!((c.kind, c.height, c.width), (ProcessorKind::Vit, 384, 384));
        assert!(!c.do_pad && !c.do_thumbnail);
        let c = ImageProcessorConfig::from_value(
            &json!({"image_processor_type": "ViTImageProcessor", "size": [32, 64]}),
            p(),
        )
        .unwrap();
        assert_eq!((c.height, c.width), (32, 64));
    }

    #[test]
    fn a_fixed_size_clip_processor_is_a_plain_resize() {
        let c = ImageProcessorConfig::from_value(
            &json!({"image_processor_type": "CLIPImageProcessor", "size": {"height": 768, "width": 768},
                    "do_center_crop": false, "resample": 3, "image_mean": [0.485, 0.456, 0.406]}),
            p(),
        )
        .unwrap();
        assert_eq!((c.kind, c.height, c.width, c.resample), (ProcessorKind::Vit, 768, 768, Filter::Bicubic));
        assert_eq!(c.image_mean, [0.485, 0.456, 0.406]);
        let cropped = json!({"image_processor_type": "CLIPImageProcessor", "size": {"height": 768, "width": 768},
                             "crop_size": {"height": 224, "width": 224}});
        let err = ImageProcessorConfig::from_value(&cropped, p()).unwrap_err().to_string();
        assert!(err.contains("do_center_crop"), "{err}");
    }

    #[test]
    fn unsupported_processors_are_named() {
        for (v, needle) in [
            (json!({"image_processor_type": "CLIPImageProcessor"}), "CLIPImageProcessor"),
            (json!({"image_processor_type": "NougatImageProcessor"}), "do_crop_margin"),
            (json!({"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}}), "`size`"),
            (json!({"image_processor_type": "ViTImageProcessor", "resample": 9}), "`resample`"),
            (json!({"image_processor_type": "ViTImageProcessor", "image_std": [1, 0, 1]}), "`image_std`"),
        ] {
            let err = ImageProcessorConfig::from_value(&v, p()).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    fn model(v: Value) -> (tempfile::TempDir, ModelConfig, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let m = ModelConfig::load(&path).unwrap();
        (dir, m, path)
    }

    #[test]
    fn generation_settings_fall_back_to_the_model_config() {
        let (dir, m, path) = model(json!({
            "decoder_start_token_id": 2, "pad_token_id": 1, "eos_token_id": 2,
            "encoder": {"model_type": "vit"},
            "decoder": {"model_type": "trocr", "max_position_embeddings": 512, "no_repeat_ngram_size": 3, "max_length": 40}
        }));
        assert!(!m.prompt_is_verbatim());
        assert_eq!(m.max_positions, Some(512));
        let g = GenerationConfig::load(None, &m, &path).unwrap();
        assert_eq!((g.decoder_start_token_id, g.pad_token_id, g.eos_token_ids.clone()), (2, 1, vec![2]));
        assert_eq!((g.no_repeat_ngram_size, g.max_length, g.max_new_tokens), (3, 40, None));

        // generation_config.json wins for search settings; token ids it lacks come from config.json.
        let gpath = dir.path().join("generation_config.json");
        std::fs::write(&gpath, json!({"max_new_tokens": 7, "eos_token_id": [2, 5], "num_beams": 4}).to_string())
            .unwrap();
        let g = GenerationConfig::load(Some(&gpath), &m, &path).unwrap();
        assert_eq!((g.decoder_start_token_id, g.max_new_tokens, g.no_repeat_ngram_size), (2, Some(7), 0));
        assert_eq!(g.eos_token_ids, vec![2, 5]);
        assert_eq!(g.not_greedy.as_deref(), Some("num_beams = 4"));

        std::fs::write(&gpath, json!({"repetition_penalty": "high"}).to_string()).unwrap();
        let err = GenerationConfig::load(Some(&gpath), &m, &path).unwrap_err().to_string();
        assert!(err.contains("repetition_penalty"), "{err}");
    }

    #[test]
    fn a_config_without_encoder_and_decoder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"model_type": "bert"}"#).unwrap();
        let err = ModelConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a vision-encoder-decoder"), "{err}");
        std::fs::write(&path, "{not json").unwrap();
        assert!(ModelConfig::load(&path).unwrap_err().to_string().contains("not valid JSON"));
    }
}
