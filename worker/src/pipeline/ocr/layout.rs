//! Reading order on an upright page. Fragments on one baseline become rows (never across a
//! column gutter or a layout-region boundary); rows stacked as a paragraph (one directly under the
//! other, similar height, text-like width, same region) become blocks. Blocks are grouped by the
//! layout region holding them (a caption joins its figure or table), and those groups are ordered
//! by recursive XY-cut: page headers first, footers last; a vertical gutter between running text
//! splits the page into columns read one after the other, anything else is cut into horizontal
//! bands first, so a full-width title comes before the columns it spans and a table or a
//! label/value list is read row by row. Groups that no cut separates are merged and their blocks
//! ordered the same way. Without layout regions every block is its own group: the same ordering on
//! line geometry alone.

use super::region::RegionClass;

/// A box `[x0, y0, x1, y1]` in upright page pixels.
pub type Rect = [f32; 4];

/// One row of the page in reading order: fragment indices left to right, and its block.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub fragments: Vec<usize>,
    pub block: usize,
    pub rect: Rect,
}

fn height(r: &Rect) -> f32 {
    (r[3] - r[1]).max(1.0)
}

fn width(r: &Rect) -> f32 {
    (r[2] - r[0]).max(0.0)
}

fn union(a: &Rect, b: &Rect) -> Rect {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

fn v_overlap(a: &Rect, b: &Rect) -> f32 {
    a[3].min(b[3]) - a[1].max(b[1])
}

fn h_overlap(a: &Rect, b: &Rect) -> f32 {
    a[2].min(b[2]) - a[0].max(b[0])
}

/// A line long enough to be running text rather than a label or table cell.
fn text_like(r: &Rect) -> bool {
    width(r) >= 8.0 * height(r)
}

/// A line long enough to be running text in a narrow column, when three or more such lines
/// stand under each other.
fn column_like(r: &Rect) -> bool {
    width(r) >= 5.0 * height(r)
}

struct Sets(Vec<usize>);

impl Sets {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
    fn groups(&mut self) -> Vec<Vec<usize>> {
        let n = self.0.len();
        let mut slot = vec![usize::MAX; n];
        let mut out: Vec<Vec<usize>> = Vec::new();
        for i in 0..n {
            let r = self.find(i);
            if slot[r] == usize::MAX {
                slot[r] = out.len();
                out.push(Vec::new());
            }
            out[slot[r]].push(i);
        }
        out
    }
}

/// A layout region in the upright page's frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hint {
    pub class: RegionClass,
    pub rect: Rect,
    pub score: f32,
}

/// A page's reading: rows in reading order and the blocks they belong to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub rows: Vec<Row>,
    /// Per block (numbered as [`Row::block`]): the layout region (index into the hints) holding
    /// most of its rows, if any.
    pub block_regions: Vec<Option<usize>>,
}

/// Order fragments (upright boxes) for reading, on geometry alone.
pub fn reading_order(fragments: &[Rect]) -> Vec<Row> {
    order(fragments, &vec![false; fragments.len()], &[]).rows
}

/// The region covering most of `r` (at least a quarter of it: the detector's boxes are tighter
/// than the text detector's); ties go to the higher score.
fn region_of(r: &Rect, hints: &[Hint]) -> Option<usize> {
    let area = width(r) * height(r);
    let mut best: Option<(f32, f32, usize)> = None;
    for (i, h) in hints.iter().enumerate() {
        let o = h_overlap(r, &h.rect).max(0.0) * v_overlap(r, &h.rect).max(0.0);
        if o < 0.25 * area || o <= 0.0 {
            continue;
        }
        if best.is_none_or(|(bo, bs, _)| o > bo || (o == bo && h.score > bs)) {
            best = Some((o, h.score, i));
        }
    }
    best.map(|b| b.2)
}

/// Whether the gap between fragments `a` and `b` (b right of a) is a column gutter: nothing near
/// them (within a few lines above and below) crosses the middle of the gap, while text stands on
/// both sides of it. Word gaps inside running text are crossed by the lines above or below.
fn is_gutter(fragments: &[Rect], a: usize, b: usize) -> bool {
    let (ra, rb) = (&fragments[a], &fragments[b]);
    let h = height(ra).max(height(rb));
    let mid = (ra[2] + rb[0]) / 2.0;
    let (top, bottom) = (ra[1].min(rb[1]) - 2.5 * h, ra[3].max(rb[3]) + 2.5 * h);
    let (mut left, mut right) = (0, 0);
    for (i, o) in fragments.iter().enumerate() {
        if i == a || i == b || o[3] < top || o[1] > bottom {
            continue;
        }
        if o[0] < mid && o[2] > mid {
            return false;
        }
        if o[2] <= mid {
            left += 1;
        } else {
            right += 1;
        }
    }
    left > 0 && right > 0
}

/// Order fragments (upright boxes) for reading, with the page's layout regions (may be empty).
/// `labels` marks fragments whose text ends like a form label (`Name:`): a column of labels, and
/// the values beside them, is never taken for running text.
pub fn order(fragments: &[Rect], labels: &[bool], hints: &[Hint]) -> Reading {
    if fragments.is_empty() {
        return Reading::default();
    }
    let frag_region: Vec<Option<usize>> = fragments.iter().map(|f| region_of(f, hints)).collect();
    // 1. Rows: fragments sharing a baseline with a word-sized gap between them, in one region,
    //    not across a column gutter.
    let mut sets = Sets::new(fragments.len());
    let mut by_x: Vec<usize> = (0..fragments.len()).collect();
    by_x.sort_by(|&a, &b| fragments[a][0].total_cmp(&fragments[b][0]));
    for (k, &a) in by_x.iter().enumerate() {
        for &b in &by_x[k + 1..] {
            let (ra, rb) = (&fragments[a], &fragments[b]);
            let gap = rb[0] - ra[2];
            if gap > 1.0 * height(ra).max(height(rb)) {
                if rb[0] - ra[2] > 4.0 * height(ra) {
                    break;
                }
                continue;
            }
            if v_overlap(ra, rb) >= 0.5 * height(ra).min(height(rb))
                && frag_region[a] == frag_region[b]
                && (gap < 0.3 * height(ra).min(height(rb)) || !is_gutter(fragments, a, b))
            {
                sets.join(a, b);
            }
        }
    }
    let mut rows: Vec<(Vec<usize>, Rect)> = sets
        .groups()
        .into_iter()
        .map(|mut g| {
            g.sort_by(|&a, &b| fragments[a][0].total_cmp(&fragments[b][0]));
            let rect = g.iter().skip(1).fold(fragments[g[0]], |r, &i| union(&r, &fragments[i]));
            (g, rect)
        })
        .collect();
    rows.sort_by(|a, b| a.1[1].total_cmp(&b.1[1]).then(a.1[0].total_cmp(&b.1[0])));
    let rects: Vec<Rect> = rows.iter().map(|r| r.1).collect();
    let row_region: Vec<Option<usize>> = rows.iter().map(|r| frag_region[r.0[0]]).collect();

    // 2. Blocks: a row linked to the one row right below it when each is the other's only
    //    nearest neighbour (a heading over two columns links to neither), both in one region.
    let below: Vec<Vec<usize>> = (0..rects.len()).map(|i| nearest(&rects, i, true)).collect();
    let above: Vec<Vec<usize>> = (0..rects.len()).map(|i| nearest(&rects, i, false)).collect();
    // Labels, and rows on a label's baseline right of it (its value), are form fields.
    let label_row: Vec<bool> = rows.iter().map(|r| labels[*r.0.last().expect("rows are non-empty")]).collect();
    let field: Vec<bool> = (0..rects.len())
        .map(|i| {
            label_row[i]
                || (0..rects.len()).any(|j| {
                    label_row[j]
                        && rects[j][2] <= rects[i][0]
                        && v_overlap(&rects[i], &rects[j]) >= 0.5 * height(&rects[i]).min(height(&rects[j]))
                })
        })
        .collect();
    // A narrow column's rows stand beside other text rows, or alone; a table column's short cells
    // beside numbers are no running text.
    let among_text: Vec<bool> = (0..rects.len())
        .map(|i| {
            (0..rects.len()).all(|j| {
                j == i
                    || v_overlap(&rects[i], &rects[j]) < 0.5 * height(&rects[i]).min(height(&rects[j]))
                    || width(&rects[j]) >= 4.0 * height(&rects[j])
            })
        })
        .collect();
    let in_table = |r: usize| row_region[r].is_some_and(|h| hints[h].class == RegionClass::Table);
    let mut blocks = Sets::new(rects.len());
    for a in 0..rects.len() {
        let [b] = below[a][..] else { continue };
        if above[b][..] != [a] || row_region[a] != row_region[b] || field[a] || field[b] || in_table(a) {
            continue;
        }
        let (ra, rb) = (&rects[a], &rects[b]);
        let similar = height(ra).max(height(rb)) <= 1.5 * height(ra).min(height(rb));
        let aligned = (ra[0] - rb[0]).abs() <= height(ra);
        if similar && ((text_like(ra) && (text_like(rb) || aligned)) || (column_like(ra) && aligned && among_text[a])) {
            blocks.join(a, b);
        }
    }
    // A block of running text needs two text-like rows, or three rows of a narrow column: a long
    // table cell over a short one is not a paragraph, and keeping it whole would glue two table
    // rows together.
    let mut groups = Vec::new();
    for g in blocks.groups() {
        let text_rows = g.iter().filter(|&&r| text_like(&rects[r])).count();
        let column_rows = g[..g.len() - 1].iter().filter(|&&r| column_like(&rects[r]) && among_text[r]).count();
        if g.len() > 1 && text_rows < 2 && !(g.len() >= 3 && column_rows == g.len() - 1) {
            groups.extend(g.into_iter().map(|r| vec![r]));
        } else {
            groups.push(g);
        }
    }
    let block_rects: Vec<Rect> =
        groups.iter().map(|g| g.iter().skip(1).fold(rects[g[0]], |r, &i| union(&r, &rects[i]))).collect();
    let block_region: Vec<Option<usize>> = groups.iter().map(|g| row_region[g[0]]).collect();
    let multi_line: Vec<bool> = groups.iter().map(|g| g.len() > 1).collect();
    let line_height = median(rects.iter().map(height).collect());

    // 3. Groups of blocks (one per region, a caption with its figure or table), ordered by XY-cut.
    let atoms = atoms(&block_rects, &block_region, &multi_line, hints, line_height);
    let mut ordered_blocks = Vec::new();
    for leaf in order_atoms(&atoms, line_height) {
        let ids: Vec<usize> = leaf.iter().flat_map(|&a| atoms[a].blocks.iter().copied()).collect();
        let mut leaves = Vec::new();
        xy_cut(ids, &block_rects, &multi_line, line_height, true, &mut leaves);
        for l in leaves {
            ordered_blocks.extend(by_centre(l, &block_rects));
        }
    }

    let mut out = Vec::new();
    let mut block_regions = Vec::with_capacity(ordered_blocks.len());
    for (block_no, &g) in ordered_blocks.iter().enumerate() {
        block_regions.push(block_region[g]);
        for &row in &groups[g] {
            out.push(Row { fragments: rows[row].0.clone(), block: block_no, rect: rects[row] });
        }
    }
    Reading { rows: out, block_regions }
}

/// Where a group of blocks goes: pulled to the start (page header), to the end (page footer), or
/// ordered with the body.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    First,
    Body,
    Last,
}

/// Blocks that are read together: a layout region's blocks, or a block outside every region.
#[derive(Debug)]
struct Atom {
    blocks: Vec<usize>,
    rect: Rect,
    /// Holds running text (a paragraph), a figure or a table: enough to make a column.
    running: bool,
    place: Place,
}

fn atoms(
    block_rects: &[Rect],
    block_region: &[Option<usize>],
    multi_line: &[bool],
    hints: &[Hint],
    lh: f32,
) -> Vec<Atom> {
    let mut atoms: Vec<Atom> = Vec::new();
    let mut of_region: Vec<Option<usize>> = vec![None; hints.len()];
    for (b, rect) in block_rects.iter().enumerate() {
        let slot = block_region[b].and_then(|r| of_region[r]);
        match slot {
            Some(a) => {
                atoms[a].blocks.push(b);
                atoms[a].rect = union(&atoms[a].rect, rect);
                atoms[a].running |= multi_line[b];
            }
            None => {
                let place = match block_region[b].map(|r| hints[r].class) {
                    Some(RegionClass::Header) => Place::First,
                    Some(RegionClass::Footer) => Place::Last,
                    _ => Place::Body,
                };
                if let Some(r) = block_region[b] {
                    of_region[r] = Some(atoms.len());
                }
                atoms.push(Atom { blocks: vec![b], rect: *rect, running: multi_line[b], place });
            }
        }
    }
    // Figures and tables take part in the cuts even when no text was read inside them, and a
    // caption right above or below one is read with it.
    let pictures: Vec<usize> =
        (0..hints.len()).filter(|&r| matches!(hints[r].class, RegionClass::Figure | RegionClass::Table)).collect();
    for &r in &pictures {
        if of_region[r].is_none() {
            of_region[r] = Some(atoms.len());
            atoms.push(Atom { blocks: Vec::new(), rect: hints[r].rect, running: true, place: Place::Body });
        } else if let Some(a) = of_region[r] {
            atoms[a].running = true;
        }
    }
    for (r, hint) in hints.iter().enumerate() {
        let (Some(a), true) =
            (of_region[r], matches!(hint.class, RegionClass::FigureCaption | RegionClass::TableCaption))
        else {
            continue;
        };
        let cap = atoms[a].rect;
        let near = pictures.iter().filter_map(|&p| of_region[p].map(|pa| (p, pa))).filter(|&(p, _)| {
            let pic = &hints[p].rect;
            let gap = (cap[1] - pic[3]).max(pic[1] - cap[3]);
            h_overlap(&cap, pic) > 0.5 * width(&cap).min(width(pic)) && gap < 3.0 * lh
        });
        let Some((_, pa)) = near.min_by(|x, y| {
            let d = |p: usize| (atoms[a].rect[1] - hints[p].rect[3]).abs().min((hints[p].rect[1] - cap[3]).abs());
            d(x.0).total_cmp(&d(y.0))
        }) else {
            continue;
        };
        if pa != a {
            let moved = std::mem::take(&mut atoms[a].blocks);
            atoms[pa].blocks.extend(moved);
            atoms[pa].rect = union(&atoms[pa].rect, &cap);
        }
    }
    atoms.retain(|a| !a.blocks.is_empty() || a.running);
    // A header is only pulled first when it is above all the body (a footer: below), so a
    // misclassified heading mid-page stays where it is.
    let body: Vec<Rect> =
        atoms.iter().filter(|a| a.place == Place::Body && !a.blocks.is_empty()).map(|a| a.rect).collect();
    for a in &mut atoms {
        let mid = (a.rect[1] + a.rect[3]) / 2.0;
        if (a.place == Place::First && body.iter().any(|b| (b[1] + b[3]) / 2.0 < mid))
            || (a.place == Place::Last && body.iter().any(|b| (b[1] + b[3]) / 2.0 > mid))
        {
            a.place = Place::Body;
        }
    }
    atoms
}

/// Atoms in reading order, as leaves of the XY-cut: each leaf holds atoms no cut separates.
fn order_atoms(atoms: &[Atom], lh: f32) -> Vec<Vec<usize>> {
    let rects: Vec<Rect> = atoms.iter().map(|a| a.rect).collect();
    let running: Vec<bool> = atoms.iter().map(|a| a.running).collect();
    let mut out = Vec::new();
    for place in [Place::First, Place::Body, Place::Last] {
        let ids: Vec<usize> = (0..atoms.len()).filter(|&a| atoms[a].place == place).collect();
        if place == Place::Body {
            // Regions side by side that hold no running text (labels beside values) are merged and
            // their blocks ordered together, row by row.
            xy_cut(ids, &rects, &running, lh, false, &mut out);
        } else {
            // Left to right, top to bottom: the header's parts on one line are read as one.
            out.push(ids);
        }
    }
    out
}

/// Blocks top to bottom (by centre), then left to right.
fn by_centre(mut ids: Vec<usize>, rects: &[Rect]) -> Vec<usize> {
    let mid = |r: &Rect| r[1] + r[3];
    ids.sort_by(|&a, &b| mid(&rects[a]).total_cmp(&mid(&rects[b])).then(rects[a][0].total_cmp(&rects[b][0])));
    ids
}

/// The rows nearest below (or above) row `i` that overlap it horizontally, within a line's gap.
fn nearest(rects: &[Rect], i: usize, below: bool) -> Vec<usize> {
    let r = &rects[i];
    let h = height(r);
    let gaps: Vec<(usize, f32)> = (0..rects.len())
        .filter(|&j| j != i && h_overlap(r, &rects[j]) > 0.0)
        .filter_map(|j| {
            let o = &rects[j];
            let (gap, is_below) =
                if below { (o[1] - r[3], o[1] > r[1] + 0.5 * h) } else { (r[1] - o[3], o[1] < r[1] - 0.5 * h) };
            (is_below && gap <= 1.0 * h.max(height(o))).then_some((j, gap))
        })
        .collect();
    let Some(min) = gaps.iter().map(|g| g.1).min_by(f32::total_cmp) else { return Vec::new() };
    gaps.into_iter().filter(|g| g.1 <= min + 0.5 * h).map(|g| g.0).collect()
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 1.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Split `ids` into groups separated by gaps in their projection on x (`axis` 0) or y (1). Each
/// box counts with `shrink` pixels (at most a quarter of its extent) taken off both ends:
/// detector boxes are grown around the ink, and on y that growth makes neighbouring table rows
/// touch. (A fraction of the extent would shrink a tall column far more than a heading beside it.)
fn split(ids: &[usize], rects: &[Rect], axis: usize, min_gap: f32, shrink: f32) -> Vec<Vec<usize>> {
    let span = |r: &Rect| {
        let cut = ((r[axis + 2] - r[axis]) * 0.25).min(shrink);
        (r[axis] + cut, r[axis + 2] - cut)
    };
    let mut sorted = ids.to_vec();
    sorted.sort_by(|&a, &b| span(&rects[a]).0.total_cmp(&span(&rects[b]).0));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut reach = f32::MIN;
    for id in sorted {
        let (start, end) = span(&rects[id]);
        if groups.is_empty() || start - reach > min_gap {
            groups.push(vec![id]);
        } else {
            groups.last_mut().expect("non-empty").push(id);
        }
        reach = reach.max(end);
    }
    groups
}

/// Whether `ids` split into two or more columns that each hold running text.
fn text_columns(ids: &[usize], rects: &[Rect], running: &[bool], line_height: f32) -> Option<Vec<Vec<usize>>> {
    let columns = split(ids, rects, 0, 0.5 * line_height, 0.0);
    (columns.len() > 1 && columns.iter().all(|c| c.iter().any(|&i| running[i]))).then_some(columns)
}

/// A band of headings standing over the columns of the band below it, one heading per column
/// at most (subheadings level with each other), joins that band, so each column is read with
/// its heading; a heading spanning several columns stays before them.
fn headings_into_columns(bands: Vec<Vec<usize>>, rects: &[Rect], running: &[bool], lh: f32) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bands = bands.into_iter().peekable();
    while let Some(band) = bands.next() {
        let joins = bands.peek().is_some_and(|next| {
            let Some(columns) =
                (!band.iter().any(|&i| running[i])).then(|| text_columns(next, rects, running, lh)).flatten()
            else {
                return false;
            };
            let spans: Vec<Rect> =
                columns.iter().map(|c| c.iter().skip(1).fold(rects[c[0]], |r, &i| union(&r, &rects[i]))).collect();
            let mut hit = vec![0usize; spans.len()];
            for &i in &band {
                let over: Vec<usize> = (0..spans.len()).filter(|&c| h_overlap(&rects[i], &spans[c]) > 0.0).collect();
                let [c] = over[..] else { return false };
                hit[c] += 1;
            }
            let joined: Vec<usize> = band.iter().chain(next.iter()).copied().collect();
            hit.iter().all(|&h| h <= 1)
                && text_columns(&joined, rects, running, lh).is_some_and(|c| c.len() == columns.len())
        });
        match joins {
            true => {
                let next = bands.next().expect("peeked");
                out.push(band.into_iter().chain(next).collect());
            }
            false => out.push(band),
        }
    }
    out
}

/// Recursive XY-cut: columns when every part holds running text, else horizontal bands, else
/// (`columns_last`) columns anyway; what no cut separates is pushed to `out` as one leaf.
fn xy_cut(
    ids: Vec<usize>,
    rects: &[Rect],
    running: &[bool],
    line_height: f32,
    columns_last: bool,
    out: &mut Vec<Vec<usize>>,
) {
    if ids.len() <= 1 {
        if !ids.is_empty() {
            out.push(ids);
        }
        return;
    }
    let columns = split(&ids, rects, 0, 0.5 * line_height, 0.0);
    let is_columns = columns.len() > 1 && columns.iter().all(|c| c.iter().any(|&i| running[i]));
    let parts = if is_columns {
        columns
    } else {
        let bands = headings_into_columns(split(&ids, rects, 1, 0.0, 0.25 * line_height), rects, running, line_height);
        if bands.len() > 1 || !columns_last { bands } else { columns }
    };
    if parts.len() > 1 {
        for part in parts {
            xy_cut(part, rects, running, line_height, columns_last, out);
        }
        return;
    }
    out.push(ids);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rows: &[Row], names: &[&str]) -> Vec<String> {
        rows.iter().map(|r| r.fragments.iter().map(|&i| names[i]).collect::<Vec<_>>().join(" ")).collect()
    }

    #[test]
    fn two_columns_under_a_heading_are_read_column_by_column() {
        // The two-column fixture's geometry: heading, then 4 + 4 lines sharing baselines.
        let mut rects = vec![[60.0, 70.0, 624.0, 103.0]];
        let mut names = vec!["title"];
        let left = ["l1", "l2", "l3", "l4"];
        let right = ["r1", "r2", "r3", "r4"];
        for i in 0..4 {
            let y = 158.0 + 44.0 * i as f32;
            rects.push([60.0, y, 400.0, y + 24.0]);
            names.push(left[i]);
            rects.push([545.0, y, 850.0, y + 24.0]);
            names.push(right[i]);
        }
        let rows = reading_order(&rects);
        assert_eq!(texts(&rows, &names), ["title", "l1", "l2", "l3", "l4", "r1", "r2", "r3", "r4"]);
        assert_ne!(rows[1].block, rows[5].block);
    }

    #[test]
    fn a_table_is_read_row_by_row_and_fragments_join_on_their_baseline() {
        let mut rects = Vec::new();
        let mut names = Vec::new();
        let cells = [["01", "Basic", "10", "8.10"], ["02", "Priority", "6", "2.12"], ["03", "Visit", "2", "1.56"]];
        for (r, row) in cells.iter().enumerate() {
            let y = 100.0 + 40.0 * r as f32;
            for (c, cell) in row.iter().enumerate() {
                let x = 100.0 + 200.0 * c as f32;
                rects.push([x, y, x + 60.0, y + 25.0]);
                names.push(*cell);
            }
        }
        // Two words of one line detected apart.
        rects.push([100.0, 300.0, 200.0, 325.0]);
        names.push("Total");
        rects.push([215.0, 301.0, 300.0, 326.0]);
        names.push("25.30");
        let rows = reading_order(&rects);
        let t = texts(&rows, &names);
        assert_eq!(&t[..4], ["01", "Basic", "10", "8.10"]);
        assert_eq!(&t[4..8], ["02", "Priority", "6", "2.12"]);
        assert_eq!(t.last().unwrap(), "Total 25.30");
    }

    #[test]
    fn a_paragraph_is_one_block_in_order() {
        let rects: Vec<Rect> = (0..5)
            .map(|i| [50.0, 100.0 + 40.0 * i as f32, if i == 4 { 300.0 } else { 900.0 }, 124.0 + 40.0 * i as f32])
            .collect();
        let rows = reading_order(&rects);
        assert_eq!(rows.iter().map(|r| r.fragments[0]).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert!(rows.iter().all(|r| r.block == 0));
    }

    #[test]
    fn three_narrow_columns_are_read_column_by_column_on_geometry_alone() {
        // The three_columns fixture's line boxes (PP-OCRv4): a title, 3 × 6 short lines on shared
        // baselines with ~120 px gutters, a full-width line under them.
        let rects: Vec<Rect> = vec![
            [50., 50., 818., 88.],
            [48., 147., 270., 182.],
            [428., 147., 687., 182.],
            [810., 149., 1084., 177.],
            [46., 190., 300., 229.],
            [46., 236., 310., 275.],
            [49., 286., 291., 317.],
            [49., 331., 284., 362.],
            [48., 377., 241., 408.],
            [425., 186., 665., 231.],
            [426., 234., 659., 275.],
            [428., 286., 657., 317.],
            [429., 332., 654., 363.],
            [427., 377., 672., 412.],
            [805., 189., 1043., 229.],
            [805., 233., 1055., 277.],
            [807., 283., 1077., 319.],
            [807., 330., 1045., 365.],
            [808., 377., 1022., 412.],
            [49., 496., 729., 530.],
        ];
        let got: Vec<usize> = reading_order(&rects).iter().map(|r| r.fragments[0]).collect();
        assert_eq!(got, [0, 1, 4, 5, 6, 7, 8, 2, 9, 10, 11, 12, 13, 3, 14, 15, 16, 17, 18, 19]);
    }

    #[test]
    fn labels_beside_values_are_read_row_by_row_even_in_two_regions() {
        let mut rects = Vec::new();
        let mut labels = Vec::new();
        for i in 0..5 {
            let y = 100.0 + 50.0 * i as f32;
            rects.push([60.0, y, 60.0 + 40.0 * (i + 2) as f32, y + 30.0]);
            labels.push(true);
            rects.push([400.0, y, 560.0, y + 30.0]);
            labels.push(false);
        }
        let hint = |x0: f32, x1: f32| Hint { class: RegionClass::Text, rect: [x0, 90.0, x1, 340.0], score: 0.9 };
        for hints in [vec![], vec![hint(50.0, 380.0), hint(390.0, 570.0)]] {
            let reading = order(&rects, &labels, &hints);
            let got: Vec<usize> = reading.rows.iter().map(|r| r.fragments[0]).collect();
            assert_eq!(got, (0..10).collect::<Vec<_>>(), "{} regions", hints.len());
        }
    }
}
