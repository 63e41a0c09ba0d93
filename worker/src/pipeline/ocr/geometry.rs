//! Plane geometry for text boxes: convex hull, minimum-area rectangle, corner order, and the
//! page-rotation transforms between the stored page and its upright reading frame.

/// A point `[x, y]` in pixels.
pub type Point = [f32; 2];

/// Four corners. Detector boxes are clockwise from the top-left in image coordinates; a line's
/// reading quad is clockwise from the top-left *of its text* (rotated pages start elsewhere).
pub type Quad = [Point; 4];

/// Convex hull (Andrew's monotone chain), counter-clockwise in a y-up frame, no repeated point.
pub fn convex_hull(points: &mut [Point]) -> Vec<Point> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    if points.len() < 3 {
        return points.to_vec();
    }
    let cross = |o: Point, a: Point, b: Point| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<Point> = Vec::with_capacity(points.len() * 2);
    for &p in points.iter() {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower = hull.len() + 1;
    for &p in points.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

/// A rotated rectangle: centre, side along `axis` (unit vector) and the side across it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedRect {
    pub center: Point,
    pub axis: Point,
    pub along: f32,
    pub across: f32,
}

impl RotatedRect {
    /// The rectangle grown by `d` on every side.
    pub fn grown(self, d: f32) -> Self {
        Self { along: self.along + 2.0 * d, across: self.across + 2.0 * d, ..self }
    }

    pub fn short_side(&self) -> f32 {
        self.along.min(self.across)
    }

    /// Corners ordered as PaddleOCR's `get_mini_boxes` does: the two left-most points give the
    /// top-left and bottom-left (by y), the two right-most the top-right and bottom-right.
    pub fn corners(&self) -> Quad {
        let [ux, uy] = self.axis;
        let (vx, vy) = (-uy, ux);
        let (a, b) = (self.along / 2.0, self.across / 2.0);
        let [cx, cy] = self.center;
        let mut pts = [
            [cx - ux * a - vx * b, cy - uy * a - vy * b],
            [cx + ux * a - vx * b, cy + uy * a - vy * b],
            [cx + ux * a + vx * b, cy + uy * a + vy * b],
            [cx - ux * a + vx * b, cy - uy * a + vy * b],
        ];
        pts.sort_by(|p, q| p[0].total_cmp(&q[0]));
        let (tl, bl) = if pts[1][1] > pts[0][1] { (pts[0], pts[1]) } else { (pts[1], pts[0]) };
        let (tr, br) = if pts[3][1] > pts[2][1] { (pts[2], pts[3]) } else { (pts[3], pts[2]) };
        [tl, tr, br, bl]
    }
}

/// The minimum-area rectangle around a convex hull (rotating calipers over its edges).
pub fn min_area_rect(hull: &[Point]) -> Option<RotatedRect> {
    if hull.is_empty() {
        return None;
    }
    if hull.len() == 1 {
        return Some(RotatedRect { center: hull[0], axis: [1.0, 0.0], along: 0.0, across: 0.0 });
    }
    let mut best: Option<(f32, RotatedRect)> = None;
    for i in 0..hull.len() {
        let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-6 {
            continue;
        }
        let u = [dx / len, dy / len];
        let v = [-u[1], u[0]];
        let (mut umin, mut umax, mut vmin, mut vmax) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for h in hull {
            let pu = h[0] * u[0] + h[1] * u[1];
            let pv = h[0] * v[0] + h[1] * v[1];
            umin = umin.min(pu);
            umax = umax.max(pu);
            vmin = vmin.min(pv);
            vmax = vmax.max(pv);
        }
        let area = (umax - umin) * (vmax - vmin);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let (cu, cv) = ((umin + umax) / 2.0, (vmin + vmax) / 2.0);
            let center = [u[0] * cu + v[0] * cv, u[1] * cu + v[1] * cv];
            best = Some((area, RotatedRect { center, axis: u, along: umax - umin, across: vmax - vmin }));
        }
    }
    best.map(|(_, r)| r)
}

/// Whether `p` lies inside (or on) a convex quad, in either winding.
pub fn in_convex_quad(q: &Quad, p: Point) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let c = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        if c.abs() < 1e-6 {
            continue;
        }
        if sign == 0.0 {
            sign = c.signum();
        } else if c.signum() != sign {
            return false;
        }
    }
    true
}

pub fn distance(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Width (top/bottom edges) and height (left/right edges) of a quad, the longer of each pair.
pub fn quad_size(q: &Quad) -> (f32, f32) {
    (distance(q[0], q[1]).max(distance(q[3], q[2])), distance(q[0], q[3]).max(distance(q[1], q[2])))
}

/// The corners starting `k` places later: the same quad read after turning its content by
/// `k × 90°` counter-clockwise (k = 1: text running top to bottom becomes upright).
pub fn rotate_corners(q: &Quad, k: usize) -> Quad {
    [q[k % 4], q[(k + 1) % 4], q[(k + 2) % 4], q[(k + 3) % 4]]
}

/// Map a point of a stored page (`width` × `height`) that was turned `k × 90°` clockwise into
/// the upright page's frame.
pub fn to_upright(p: Point, k: usize, width: f32, height: f32) -> Point {
    match k % 4 {
        0 => p,
        1 => [p[1], width - p[0]],
        2 => [width - p[0], height - p[1]],
        _ => [height - p[1], p[0]],
    }
}

/// Axis-aligned bounds `[x0, y0, x1, y1]` of points.
pub fn bounds(points: &[Point]) -> [f32; 4] {
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for p in points {
        b[0] = b[0].min(p[0]);
        b[1] = b[1].min(p[1]);
        b[2] = b[2].max(p[0]);
        b[3] = b[3].max(p[1]);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_an_axis_aligned_box_and_a_rotated_one() {
        let mut pts = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 4.0], [5.0, 2.0]];
        let hull = convex_hull(&mut pts);
        assert_eq!(hull.len(), 4);
        let r = min_area_rect(&hull).unwrap();
        assert!((r.along * r.across - 40.0).abs() < 1e-3);
        assert_eq!(r.corners(), [[0.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 4.0]]);

        // The same box turned by 30°: the rectangle follows it.
        let (s, c) = (30f32.to_radians().sin(), 30f32.to_radians().cos());
        let mut turned: Vec<Point> = pts.iter().map(|p| [p[0] * c - p[1] * s, p[0] * s + p[1] * c]).collect();
        let r = min_area_rect(&convex_hull(&mut turned)).unwrap();
        assert!((r.along.max(r.across) - 10.0).abs() < 1e-3 && (r.short_side() - 4.0).abs() < 1e-3, "{r:?}");
        let grown = r.grown(1.0);
        assert!((grown.short_side() - 6.0).abs() < 1e-3);
    }

    #[test]
    fn rotations_round_trip_between_stored_and_upright_frames() {
        // An 800×700 upright page turned 90° clockwise is stored as 700×800: its upright top-left
        // corner is the stored top-right.
        assert_eq!(to_upright([700.0, 0.0], 1, 700.0, 800.0), [0.0, 0.0]);
        assert_eq!(to_upright([0.0, 0.0], 2, 800.0, 700.0), [800.0, 700.0]);
        assert_eq!(to_upright([0.0, 800.0], 3, 700.0, 800.0), [0.0, 0.0]);
        let q: Quad = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert_eq!(rotate_corners(&q, 1)[0], [1.0, 0.0]);
        assert_eq!(rotate_corners(&q, 2)[0], [1.0, 1.0]);
        assert!(in_convex_quad(&q, [0.5, 0.5]) && !in_convex_quad(&q, [1.5, 0.5]));
    }
}
