//! Reading order on an upright page. Fragments on one baseline become rows; rows stacked as a
//! paragraph (one directly under the other, similar height, text-like width) become blocks; blocks
//! are ordered by recursive XY-cut. A vertical gutter between paragraph blocks splits the page
//! into columns read one after the other, so a two-column page is not interleaved; other regions
//! are cut into horizontal bands first, so a table is read row by row.

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

/// Order fragments (upright boxes) for reading.
pub fn reading_order(fragments: &[Rect]) -> Vec<Row> {
    if fragments.is_empty() {
        return Vec::new();
    }
    // 1. Rows: fragments sharing a baseline with a word-sized gap between them.
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
            if v_overlap(ra, rb) >= 0.5 * height(ra).min(height(rb)) {
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

    // 2. Blocks: a row linked to the one row right below it when each is the other's only
    //    nearest neighbour (a heading over two columns links to neither).
    let below: Vec<Vec<usize>> = (0..rects.len()).map(|i| nearest(&rects, i, true)).collect();
    let above: Vec<Vec<usize>> = (0..rects.len()).map(|i| nearest(&rects, i, false)).collect();
    let mut blocks = Sets::new(rects.len());
    for a in 0..rects.len() {
        let [b] = below[a][..] else { continue };
        if above[b][..] != [a] {
            continue;
        }
        let (ra, rb) = (&rects[a], &rects[b]);
        let similar = height(ra).max(height(rb)) <= 1.5 * height(ra).min(height(rb));
        let aligned = (ra[0] - rb[0]).abs() <= height(ra);
        if similar && text_like(ra) && (text_like(rb) || aligned) {
            blocks.join(a, b);
        }
    }
    // A block of running text needs two text-like rows: a long table cell over a short one is
    // not a paragraph, and keeping it whole would glue two table rows together.
    let mut groups = Vec::new();
    for g in blocks.groups() {
        if g.len() > 1 && g.iter().filter(|&&r| text_like(&rects[r])).count() < 2 {
            groups.extend(g.into_iter().map(|r| vec![r]));
        } else {
            groups.push(g);
        }
    }
    let block_rects: Vec<Rect> =
        groups.iter().map(|g| g.iter().skip(1).fold(rects[g[0]], |r, &i| union(&r, &rects[i]))).collect();
    let multi_line: Vec<bool> = groups.iter().map(|g| g.len() > 1).collect();
    let line_height = median(rects.iter().map(height).collect());

    // 3. Order blocks by XY-cut.
    let mut ordered = Vec::new();
    xy_cut((0..groups.len()).collect(), &block_rects, &multi_line, line_height, &mut ordered);

    let mut out = Vec::new();
    for (block_no, &g) in ordered.iter().enumerate() {
        for &row in &groups[g] {
            out.push(Row { fragments: rows[row].0.clone(), block: block_no, rect: rects[row] });
        }
    }
    out
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
/// box counts with `shrink` of its extent taken off both ends: detector boxes are grown around
/// the ink, and on y that growth makes neighbouring table rows touch.
fn split(ids: &[usize], rects: &[Rect], axis: usize, min_gap: f32, shrink: f32) -> Vec<Vec<usize>> {
    let span = |r: &Rect| {
        let cut = (r[axis + 2] - r[axis]) * shrink;
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

fn xy_cut(ids: Vec<usize>, rects: &[Rect], multi_line: &[bool], line_height: f32, out: &mut Vec<usize>) {
    if ids.len() <= 1 {
        out.extend(ids);
        return;
    }
    let columns = split(&ids, rects, 0, 0.5 * line_height, 0.0);
    // Columns of running text: every part holds a paragraph.
    let is_columns = columns.len() > 1 && columns.iter().all(|c| c.iter().any(|&i| multi_line[i]));
    let parts = if is_columns {
        columns
    } else {
        let bands = split(&ids, rects, 1, 0.0, 0.25);
        if bands.len() > 1 { bands } else { columns }
    };
    if parts.len() > 1 {
        for part in parts {
            xy_cut(part, rects, multi_line, line_height, out);
        }
        return;
    }
    // Overlapping blocks: top to bottom (by centre), then left to right.
    let mut ids = ids;
    let mid = |r: &Rect| r[1] + r[3];
    ids.sort_by(|&a, &b| mid(&rects[a]).total_cmp(&mid(&rects[b])).then(rects[a][0].total_cmp(&rects[b][0])));
    out.extend(ids);
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
}
