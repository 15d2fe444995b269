//! A random scene as plain data: background, one to three shapes with their colours, sizes and
//! places. The renderer and the caption writer both read it, so pixels and words state the same facts.

use rand::Rng;

/// A named colour. Objects use [`Colour::OBJECT`], backgrounds [`Colour::BACKGROUND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
    /// Orange.
    Orange,
    /// White.
    White,
    /// Black.
    Black,
    /// Gray (backgrounds only).
    Gray,
}

impl Colour {
    /// Every colour, in a fixed order.
    pub const ALL: [Colour; 9] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::White,
        Colour::Black,
        Colour::Gray,
    ];
    /// Colours an object may have.
    pub const OBJECT: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::White,
        Colour::Black,
    ];
    /// Colours a background may have; gray is background-only, so a gray scene never hides an object.
    pub const BACKGROUND: [Colour; 6] = [
        Colour::White,
        Colour::Black,
        Colour::Gray,
        Colour::Blue,
        Colour::Green,
        Colour::Yellow,
    ];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
            Colour::White => "white",
            Colour::Black => "black",
            Colour::Gray => "gray",
        }
    }

    /// The nominal sRGB value; rendered pixels are jittered around it. The values are at least
    /// ~100 apart (Euclidean) so that each stays recognisable after jitter, noise and JPEG.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [215, 35, 35],
            Colour::Green => [40, 165, 60],
            Colour::Blue => [35, 70, 215],
            Colour::Yellow => [240, 215, 40],
            Colour::Purple => [135, 45, 165],
            Colour::Orange => [245, 135, 25],
            Colour::White => [242, 242, 242],
            Colour::Black => [18, 18, 18],
            Colour::Gray => [128, 128, 128],
        }
    }

    /// The named colour closest to `rgb` (squared Euclidean distance).
    pub fn nearest(rgb: [u8; 3]) -> Colour {
        let dist = |c: Colour| {
            c.rgb()
                .iter()
                .zip(rgb)
                .map(|(&a, b)| (a as i32 - b as i32).pow(2))
                .sum::<i32>()
        };
        let mut best = Colour::ALL[0];
        for c in Colour::ALL {
            if dist(c) < dist(best) {
                best = c;
            }
        }
        best
    }
}

/// The shape of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// A filled disc.
    Circle,
    /// A square.
    Square,
    /// A triangle.
    Triangle,
    /// A star.
    Star,
    /// A disc with a hole: a band between [`RING_MID`] ± [`RING_HALF_WIDTH`] of the radius.
    Ring,
    /// A rectangle.
    Rectangle,
}

impl Shape {
    /// Every shape, in a fixed order.
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Ring,
        Shape::Rectangle,
    ];

    /// The singular noun.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Ring => "ring",
            Shape::Rectangle => "rectangle",
        }
    }

    /// The plural noun.
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
            Shape::Ring => "rings",
            Shape::Rectangle => "rectangles",
        }
    }
}

/// Size class; the radii of the two classes are more than twice apart so the word is never doubtful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The small class.
    Small,
    /// The large class.
    Large,
}

/// Where a lone object sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// In the middle of the image.
    Center,
    /// On the left, halfway down.
    Left,
    /// On the right, halfway down.
    Right,
    /// Near the top, halfway across.
    Top,
    /// Near the bottom, halfway across.
    Bottom,
}

/// How the two objects of a [`Layout::Pair`] stand: the first is left of / above the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Side by side: the first object is on the left.
    Beside,
    /// One over the other: the first object is on top.
    Above,
}

/// What kind of scene this is; decides which caption templates apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One object of the given size at the given place.
    Single {
        /// The object's size class.
        size: Size,
        /// Where it sits.
        position: Position,
    },
    /// `count` (2 or 3) identical objects (same shape, colour and size class) in a horizontal row.
    Row {
        /// Number of objects, 2 or 3.
        count: usize,
        /// Their common size class.
        size: Size,
    },
    /// Two objects differing in shape or colour; `objects[0]` is the left or upper one.
    Pair {
        /// How the two stand.
        relation: Relation,
    },
}

/// Mild shading of the background; not mentioned in captions (it is nuisance, like lighting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Texture {
    /// One flat colour.
    Plain,
    /// Brightness changes by up to `±amount` from top to bottom.
    VerticalGradient(f32),
    /// Brightness changes by up to `±amount` from left to right.
    HorizontalGradient(f32),
}

/// One drawn object, in pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// What it is.
    pub shape: Shape,
    /// The colour named in captions.
    pub colour: Colour,
    /// The colour actually drawn: `colour.rgb()` with a small jitter.
    pub rgb: [u8; 3],
    /// Horizontal centre, pixels from the left edge.
    pub cx: f32,
    /// Vertical centre, pixels from the top edge.
    pub cy: f32,
    /// Circumradius: the shape fits in the circle of this radius around (cx, cy).
    pub radius: f32,
    /// Rotation in radians (squares, rectangles, triangles, stars).
    pub rotation: f32,
}

impl Object {
    /// A point well inside the painted area (the centre, except for a ring: the middle of its band).
    pub fn interior_point(&self) -> (f32, f32) {
        match self.shape {
            Shape::Ring => (self.cx + RING_MID * self.radius, self.cy),
            _ => (self.cx, self.cy),
        }
    }
}

/// A ring's band spans radii `(RING_MID - RING_HALF_WIDTH) r ..= (RING_MID + RING_HALF_WIDTH) r`.
pub const RING_MID: f32 = 0.75;
/// Half the width of a ring's band, relative to its radius.
pub const RING_HALF_WIDTH: f32 = 0.25;

/// A complete scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// The background's named colour.
    pub background: Colour,
    /// The background colour actually drawn: `background.rgb()` with a small jitter.
    pub background_rgb: [u8; 3],
    /// The background's shading.
    pub texture: Texture,
    /// The kind of scene.
    pub layout: Layout,
    /// The objects drawn, in the order the layout describes them.
    pub objects: Vec<Object>,
    /// Seeds the per-pixel noise, so rendering is a pure function of the scene.
    pub noise_seed: u64,
}

/// A uniformly chosen element of a non-empty slice.
pub(crate) fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn jitter_rgb(rng: &mut impl Rng, rgb: [u8; 3], amount: i32) -> [u8; 3] {
    rgb.map(|c| (c as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// Keeps a centre coordinate far enough from the edges that the whole shape is visible.
fn fit(centre: f32, radius: f32, extent: f32) -> f32 {
    let margin = radius + 2.0;
    if extent <= 2.0 * margin {
        extent / 2.0
    } else {
        centre.clamp(margin, extent - margin)
    }
}

/// An object with a jittered colour and rotation, its centre moved inside the `(w, h)` frame.
fn make_object(
    rng: &mut impl Rng,
    (w, h): (f32, f32),
    shape: Shape,
    colour: Colour,
    (cx, cy): (f32, f32),
    radius: f32,
) -> Object {
    Object {
        shape,
        colour,
        rgb: jitter_rgb(rng, colour.rgb(), 12),
        cx: fit(cx, radius, w),
        cy: fit(cy, radius, h),
        radius,
        rotation: rng.random_range(-0.2..0.2),
    }
}

impl Scene {
    /// Draws a random scene from `rng`.
    pub fn random<R: Rng>(rng: &mut R) -> Scene {
        // 224..=400 px wide, aspect 1.25..1.40 (4:3-ish), so readers must resize.
        let width: u32 = rng.random_range(224..=400);
        let ratio: f32 = rng.random_range(1.25..1.40);
        let height = (width as f32 / ratio).round() as u32;
        let (w, h) = (width as f32, height as f32);

        let background = pick(rng, &Colour::BACKGROUND);
        let background_rgb = jitter_rgb(rng, background.rgb(), 8);
        let texture = match rng.random_range(0..4) {
            0 => Texture::VerticalGradient(rng.random_range(10.0..30.0)),
            1 => Texture::HorizontalGradient(rng.random_range(10.0..30.0)),
            _ => Texture::Plain,
        };
        let colours: Vec<Colour> = Colour::OBJECT
            .into_iter()
            .filter(|&c| c != background)
            .collect();

        let object = |rng: &mut R, shape, colour, cx, cy, radius| {
            make_object(rng, (w, h), shape, colour, (cx, cy), radius)
        };

        let kind: f32 = rng.random();
        let (layout, objects) = if kind < 0.4 {
            let size = if rng.random_bool(0.5) {
                Size::Small
            } else {
                Size::Large
            };
            let radius = h * match size {
                Size::Small => rng.random_range(0.08..0.11),
                Size::Large => rng.random_range(0.22..0.27),
            };
            let position = pick(
                rng,
                &[
                    Position::Center,
                    Position::Left,
                    Position::Right,
                    Position::Top,
                    Position::Bottom,
                ],
            );
            let (fx, fy) = match position {
                Position::Center => (0.5, 0.5),
                Position::Left => (0.22, 0.5),
                Position::Right => (0.78, 0.5),
                Position::Top => (0.5, 0.24),
                Position::Bottom => (0.5, 0.76),
            };
            let cx = w * (fx + rng.random_range(-0.03..0.03));
            let cy = h * (fy + rng.random_range(-0.03..0.03));
            let shape = pick(rng, &Shape::ALL);
            let colour = pick(rng, &colours);
            let o = object(rng, shape, colour, cx, cy, radius);
            (Layout::Single { size, position }, vec![o])
        } else if kind < 0.7 {
            let count = if kind < 0.55 { 2 } else { 3 };
            let size = if rng.random_bool(0.5) {
                Size::Small
            } else {
                Size::Large
            };
            let shape = pick(rng, &Shape::ALL);
            let colour = pick(rng, &colours);
            // A slot is w/count wide; the large class fills most of it without touching the neighbour.
            let (lo, hi) = match (count, size) {
                (2, Size::Small) => (0.08, 0.11),
                (2, Size::Large) => (0.20, 0.24),
                (_, Size::Small) => (0.07, 0.09),
                (_, Size::Large) => (0.15, 0.18),
            };
            let base = h * rng.random_range(lo..hi);
            let row_y = h * (0.5 + rng.random_range(-0.1..0.1));
            let slot = w / count as f32;
            let objects = (0..count)
                .map(|i| {
                    let radius = base * rng.random_range(0.95..1.05);
                    let cx = slot * (i as f32 + 0.5) + slot * rng.random_range(-0.03..0.03);
                    let cy = row_y + h * rng.random_range(-0.03..0.03);
                    object(rng, shape, colour, cx, cy, radius)
                })
                .collect();
            (Layout::Row { count, size }, objects)
        } else {
            let relation = if rng.random_bool(0.5) {
                Relation::Beside
            } else {
                Relation::Above
            };
            let first = (pick(rng, &Shape::ALL), pick(rng, &colours));
            let second = loop {
                let s = (pick(rng, &Shape::ALL), pick(rng, &colours));
                if s != first {
                    break s;
                }
            };
            let mut objects = Vec::with_capacity(2);
            for (i, (shape, colour)) in [first, second].into_iter().enumerate() {
                let radius = h * rng.random_range(0.14..0.20);
                let t = i as f32;
                let (cx, cy) = match relation {
                    Relation::Beside => (
                        w * (0.28 + 0.44 * t + rng.random_range(-0.03..0.03)),
                        h * (0.5 + rng.random_range(-0.06..0.06)),
                    ),
                    Relation::Above => (
                        w * (0.5 + rng.random_range(-0.08..0.08)),
                        h * (0.27 + 0.46 * t + rng.random_range(-0.02..0.02)),
                    ),
                };
                objects.push(object(rng, shape, colour, cx, cy, radius));
            }
            (Layout::Pair { relation }, objects)
        };

        Scene {
            width,
            height,
            background,
            background_rgb,
            texture,
            layout,
            objects,
            noise_seed: rng.random(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn scenes(n: usize) -> Vec<Scene> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n).map(|_| Scene::random(&mut rng)).collect()
    }

    #[test]
    fn objects_fit_inside_and_never_match_the_background() {
        for s in scenes(500) {
            let (w, h) = (s.width as f32, s.height as f32);
            assert!((224..=400).contains(&s.width));
            for o in &s.objects {
                assert_ne!(o.colour, s.background);
                assert!(o.cx - o.radius >= 0.0 && o.cx + o.radius <= w, "{s:?}");
                assert!(o.cy - o.radius >= 0.0 && o.cy + o.radius <= h, "{s:?}");
            }
        }
    }

    #[test]
    fn objects_do_not_overlap() {
        for s in scenes(500) {
            for (i, a) in s.objects.iter().enumerate() {
                for b in &s.objects[i + 1..] {
                    let d = ((a.cx - b.cx).powi(2) + (a.cy - b.cy).powi(2)).sqrt();
                    assert!(d > a.radius + b.radius, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn layouts_match_their_geometry() {
        for s in scenes(500) {
            let (w, h) = (s.width as f32, s.height as f32);
            match s.layout {
                Layout::Single { position, .. } => {
                    let o = &s.objects[0];
                    let (dx, dy) = (o.cx / w - 0.5, o.cy / h - 0.5);
                    match position {
                        Position::Center => assert!(dx.abs() < 0.05 && dy.abs() < 0.05),
                        Position::Left => assert!(dx < -0.15 && dy.abs() < 0.05),
                        Position::Right => assert!(dx > 0.15 && dy.abs() < 0.05),
                        Position::Top => assert!(dy < -0.1 && dx.abs() < 0.05),
                        Position::Bottom => assert!(dy > 0.1 && dx.abs() < 0.05),
                    }
                }
                Layout::Row { count, .. } => {
                    assert_eq!(s.objects.len(), count);
                    assert!(s.objects.windows(2).all(|p| p[0].cx < p[1].cx));
                    assert!(s
                        .objects
                        .iter()
                        .all(|o| o.shape == s.objects[0].shape && o.colour == s.objects[0].colour));
                }
                Layout::Pair { relation } => {
                    let (a, b) = (&s.objects[0], &s.objects[1]);
                    assert!((a.shape, a.colour) != (b.shape, b.colour));
                    match relation {
                        Relation::Beside => assert!(b.cx - a.cx > (b.cy - a.cy).abs() * 2.0),
                        Relation::Above => assert!(b.cy - a.cy > (b.cx - a.cx).abs() * 2.0),
                    }
                }
            }
        }
    }

    #[test]
    fn nearest_colour_recovers_each_palette_entry() {
        for c in Colour::ALL {
            assert_eq!(Colour::nearest(c.rgb()), c);
        }
    }
}
